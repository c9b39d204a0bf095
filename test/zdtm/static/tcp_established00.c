/*
 * tcp_established00 - established TCP connections with data in flight
 * both ways, both ends in the process; dumped and restored with
 * --tcp-established.
 *
 * For IPv4 (127.0.0.1) and IPv6 (::1): a listener on a port the kernel
 * picks, a client connected to it, the connection accepted.  On each
 * connection the client writes 100,000 patterned bytes the server does
 * not read (the server's receive queue); then the server, with a 64 KiB
 * send buffer, writes a pattern without blocking until the client's
 * 64 KiB receive buffer and its own send buffer are full (the client's
 * receive queue, and bytes the server never sent).  Options: TCP_NODELAY
 * on the client, SO_KEEPALIVE and TCP_KEEPIDLE 77 on the server.
 *
 * After SIGTERM: local and peer addresses as they were; the options as
 * set; every byte comes out, in order, on both sides; 5,000 more bytes
 * go each way; the listener accepts a new connection.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtm.h"

#define C2S 100000
#define MAXS2C (4 << 20)
#define MORE 5000

struct conn {
	const char *name;
	int family;
	int lsn, cli, srv;
	size_t s2c; /* bytes the server wrote */
	struct sockaddr_storage cli_addr, srv_addr;
};

static unsigned char c2s_buf[C2S], s2c_buf[MAXS2C], in[MAXS2C];

static socklen_t addr_len(int family)
{
	return family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static void loopback(int family, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	ss->ss_family = family;
	if (family == AF_INET)
		((struct sockaddr_in *)ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else
		((struct sockaddr_in6 *)ss)->sin6_addr = in6addr_loopback;
}

static void set_int(int fd, int level, int opt, int v, const char *what)
{
	if (setsockopt(fd, level, opt, &v, sizeof(v)))
		fail("setsockopt %s: %s", what, test_strerror(errno));
}

static int get_int(int fd, int level, int opt, const char *what)
{
	int v;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, level, opt, &v, &len))
		fail("getsockopt %s: %s", what, test_strerror(errno));
	return v;
}

static void nonblock(int fd)
{
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK))
		fail("O_NONBLOCK: %s", test_strerror(errno));
}

static void setup(struct conn *c)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	loopback(c->family, &ss);
	c->lsn = socket(c->family, SOCK_STREAM, 0);
	c->cli = socket(c->family, SOCK_STREAM, 0);
	if (c->lsn < 0 || c->cli < 0)
		fail("%s: socket: %s", c->name, test_strerror(errno));
	set_int(c->lsn, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
	if (bind(c->lsn, (struct sockaddr *)&ss, addr_len(c->family)) || listen(c->lsn, 5))
		fail("%s: bind/listen: %s", c->name, test_strerror(errno));
	if (getsockname(c->lsn, (struct sockaddr *)&ss, &len))
		fail("%s: getsockname: %s", c->name, test_strerror(errno));
	set_int(c->cli, SOL_SOCKET, SO_RCVBUF, 64 << 10, "SO_RCVBUF");
	if (connect(c->cli, (struct sockaddr *)&ss, len))
		fail("%s: connect: %s", c->name, test_strerror(errno));
	c->srv = accept(c->lsn, NULL, NULL);
	if (c->srv < 0)
		fail("%s: accept: %s", c->name, test_strerror(errno));
	set_int(c->cli, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
	set_int(c->srv, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
	set_int(c->srv, IPPROTO_TCP, TCP_KEEPIDLE, 77, "TCP_KEEPIDLE");
	set_int(c->srv, SOL_SOCKET, SO_SNDBUF, 64 << 10, "SO_SNDBUF");
	len = sizeof(c->cli_addr);
	if (getsockname(c->cli, (struct sockaddr *)&c->cli_addr, &len))
		fail("%s: getsockname: %s", c->name, test_strerror(errno));
	len = sizeof(c->srv_addr);
	if (getsockname(c->srv, (struct sockaddr *)&c->srv_addr, &len))
		fail("%s: getsockname: %s", c->name, test_strerror(errno));
}

/* fill writes the client's bytes, then the server's until nothing fits. */
static void fill(struct conn *c)
{
	int unsent;

	if (write(c->cli, c2s_buf, C2S) != C2S)
		fail("%s: client write: %s", c->name, test_strerror(errno));
	nonblock(c->srv);
	for (;;) {
		ssize_t n = write(c->srv, s2c_buf + c->s2c, MAXS2C - c->s2c);
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0)
			fail("%s: server write after %zu bytes: %s", c->name, c->s2c, test_strerror(errno));
		c->s2c += n;
		if (c->s2c == MAXS2C)
			fail("%s: %d bytes written and no buffer full", c->name, MAXS2C);
	}
	if (ioctl(c->srv, SIOCOUTQNSD, &unsent) || unsent <= 0)
		fail("%s: no byte left unsent by the server (%d)", c->name, unsent);
}

static void same_addr(int fd, int peer, struct sockaddr_storage *want, const char *what, const char *name)
{
	struct sockaddr_storage got;
	socklen_t len = sizeof(got);
	int r = peer ? getpeername(fd, (struct sockaddr *)&got, &len) : getsockname(fd, (struct sockaddr *)&got, &len);

	if (r)
		fail("%s: %s: %s", name, what, test_strerror(errno));
	if (len != addr_len(want->ss_family) || memcmp(&got, want, len))
		fail("%s: %s is not what it was", name, what);
}

/* drain reads exactly n bytes from fd, waiting for them at most 10 s. */
static void drain(int fd, unsigned char *buf, size_t n, const char *what)
{
	size_t got = 0;

	nonblock(fd);
	while (got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, 10000) != 1)
			fail("%s: %zu of %zu bytes, then nothing for 10 s", what, got, n);
		r = read(fd, buf + got, n - got);
		if (r < 0 && errno == EAGAIN)
			continue;
		if (r <= 0)
			fail("%s: read after %zu of %zu bytes: %s", what, got, n, r ? test_strerror(errno) : "EOF");
		got += r;
	}
	if (read(fd, buf, 1) != -1 || errno != EAGAIN)
		fail("%s: more than the %zu bytes in flight", what, n);
}

static void check(struct conn *c)
{
	char what[64];
	int fd;

	same_addr(c->cli, 0, &c->cli_addr, "client address", c->name);
	same_addr(c->cli, 1, &c->srv_addr, "client's peer", c->name);
	same_addr(c->srv, 0, &c->srv_addr, "server address", c->name);
	same_addr(c->srv, 1, &c->cli_addr, "server's peer", c->name);
	if (!get_int(c->cli, IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY"))
		fail("%s: TCP_NODELAY lost", c->name);
	if (!get_int(c->srv, SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE"))
		fail("%s: SO_KEEPALIVE lost", c->name);
	if (get_int(c->srv, IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE") != 77)
		fail("%s: TCP_KEEPIDLE lost", c->name);

	snprintf(what, sizeof(what), "%s: client to server", c->name);
	drain(c->srv, in, C2S, what);
	expect_pattern(in, C2S, 1, what);
	snprintf(what, sizeof(what), "%s: server to client", c->name);
	drain(c->cli, in, c->s2c, what);
	expect_pattern(in, c->s2c, 2, what);

	fill_pattern(s2c_buf, MORE, 3);
	if (write(c->cli, s2c_buf, MORE) != MORE || write(c->srv, s2c_buf, MORE) != MORE)
		fail("%s: write after restore: %s", c->name, test_strerror(errno));
	snprintf(what, sizeof(what), "%s: new bytes", c->name);
	drain(c->srv, in, MORE, what);
	expect_pattern(in, MORE, 3, what);
	drain(c->cli, in, MORE, what);
	expect_pattern(in, MORE, 3, what);

	fd = socket(c->family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&c->srv_addr, addr_len(c->family)))
		fail("%s: connect to the listener after restore: %s", c->name, test_strerror(errno));
	if (accept(c->lsn, NULL, NULL) < 0)
		fail("%s: accept after restore: %s", c->name, test_strerror(errno));
}

int main(void)
{
	struct conn conns[] = { { .name = "ipv4", .family = AF_INET }, { .name = "ipv6", .family = AF_INET6 } };
	size_t i;

	test_init();
	fill_pattern(c2s_buf, C2S, 1);
	fill_pattern(s2c_buf, MAXS2C, 2);
	for (i = 0; i < 2; i++) {
		setup(&conns[i]);
		fill(&conns[i]);
	}

	test_ready();
	test_wait_stop();

	for (i = 0; i < 2; i++)
		check(&conns[i]);
	pass();
}
