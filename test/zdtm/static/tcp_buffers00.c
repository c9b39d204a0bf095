/*
 * tcp_buffers00 - TCP connections whose buffers are full both ways, both
 * ends in the process (CRIU's socket-tcpbuf-local, socket-tcpbuf6-local);
 * dumped and restored with --tcp-established.
 *
 * For IPv4 (127.0.0.1) and IPv6 (::1): a listener, a client connected to
 * it, the connection accepted.  The server asks for 100 MiB send and
 * receive buffers (the kernel caps them at wmem_max and rmem_max), the
 * client keeps the kernel's self-tuned ones.  Both sides write, without
 * blocking and in small writes of 1 to 97 bytes, patterned bytes until
 * neither can write a byte more: each side's receive queue is full, and
 * each side's send queue holds sent, unacknowledged bytes and bytes never
 * sent (SIOCOUTQNSD).
 *
 * After SIGTERM: both sides read at once, as bytes come, until each has
 * every byte the other wrote, in order; then each shuts down for writing
 * and reads EOF.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define MAXBYTES (48 << 20) /* the most either side may write */
#define BIGBUF (100 << 20)

/* end is one side of a connection: what it wrote and what it read. */
struct end {
	int fd;
	size_t wrote, read;
	uint64_t seed; /* of the bytes it writes */
	unsigned char *pattern;
};

struct conn {
	const char *name;
	int family;
	struct end cli, srv;
};

static socklen_t addr_len(int family)
{
	return family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static void set_int(int fd, int level, int opt, int v, const char *what)
{
	if (setsockopt(fd, level, opt, &v, sizeof(v)))
		fail("setsockopt %s: %s", what, test_strerror(errno));
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
	int lsn;

	memset(&ss, 0, sizeof(ss));
	ss.ss_family = c->family;
	if (c->family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else
		((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
	lsn = socket(c->family, SOCK_STREAM, 0);
	c->cli.fd = socket(c->family, SOCK_STREAM, 0);
	if (lsn < 0 || c->cli.fd < 0)
		fail("%s: socket: %s", c->name, test_strerror(errno));
	if (bind(lsn, (struct sockaddr *)&ss, addr_len(c->family)) || listen(lsn, 1))
		fail("%s: bind/listen: %s", c->name, test_strerror(errno));
	if (getsockname(lsn, (struct sockaddr *)&ss, &len))
		fail("%s: getsockname: %s", c->name, test_strerror(errno));
	if (connect(c->cli.fd, (struct sockaddr *)&ss, len))
		fail("%s: connect: %s", c->name, test_strerror(errno));
	c->srv.fd = accept(lsn, NULL, NULL);
	if (c->srv.fd < 0)
		fail("%s: accept: %s", c->name, test_strerror(errno));
	close(lsn);
	set_int(c->srv.fd, SOL_SOCKET, SO_SNDBUF, BIGBUF, "SO_SNDBUF");
	set_int(c->srv.fd, SOL_SOCKET, SO_RCVBUF, BIGBUF, "SO_RCVBUF");
	nonblock(c->cli.fd);
	nonblock(c->srv.fd);
}

/* fill writes small pieces until the end cannot take a byte more; it
 * returns how many it wrote. */
static size_t fill(struct conn *c, struct end *e)
{
	size_t n = 0, piece = 1;

	for (;;) {
		ssize_t r;

		if (e->wrote + piece > MAXBYTES)
			fail("%s: %d bytes written and no buffer full", c->name, MAXBYTES);
		r = write(e->fd, e->pattern + e->wrote, piece);
		if (r < 0 && errno == EAGAIN)
			return n;
		if (r <= 0)
			fail("%s: write after %zu bytes: %s", c->name, e->wrote, test_strerror(errno));
		e->wrote += r;
		n += r;
		piece = piece % 97 + 1;
	}
}

static int ioctl_int(int fd, unsigned long req, const char *what, const char *name)
{
	int v;

	if (ioctl(fd, req, &v))
		fail("%s: %s: %s", name, what, test_strerror(errno));
	return v;
}

/* fill_both writes both ways until neither side takes a byte more, while
 * the kernel moves what it can (loopback delivers at once). */
static void fill_both(struct conn *c)
{
	struct timespec pause = { 0, 50 * 1000 * 1000 };
	int quiet = 0;

	while (quiet < 3) {
		size_t n = fill(c, &c->srv) + fill(c, &c->cli);

		quiet = n ? 0 : quiet + 1;
		nanosleep(&pause, NULL);
	}
	if (ioctl_int(c->srv.fd, SIOCOUTQNSD, "SIOCOUTQNSD", c->name) <= 0 ||
	    ioctl_int(c->cli.fd, SIOCOUTQNSD, "SIOCOUTQNSD", c->name) <= 0)
		fail("%s: a send queue has no byte left unsent", c->name);
	if (ioctl_int(c->srv.fd, SIOCINQ, "SIOCINQ", c->name) <= 0 ||
	    ioctl_int(c->cli.fd, SIOCINQ, "SIOCINQ", c->name) <= 0)
		fail("%s: a receive queue is empty", c->name);
}

/* take reads what end e has now, checking it is what its peer p wrote. */
static void take(struct conn *c, struct end *e, struct end *p, const char *who)
{
	static unsigned char buf[1 << 16];

	for (;;) {
		ssize_t r = read(e->fd, buf, sizeof(buf));
		long bad;

		if (r < 0 && errno == EAGAIN)
			return;
		if (r <= 0)
			fail("%s: %s: read after %zu of %zu bytes: %s", c->name, who, e->read, p->wrote,
			     r ? test_strerror(errno) : "EOF");
		if (e->read + r > p->wrote)
			fail("%s: %s: %zu bytes read, the peer wrote %zu", c->name, who, e->read + r, p->wrote);
		if (memcmp(buf, p->pattern + e->read, r)) {
			for (bad = 0; buf[bad] == p->pattern[e->read + bad]; bad++)
				;
			fail("%s: %s: byte %zu differs from what the peer wrote", c->name, who, e->read + bad);
		}
		e->read += r;
	}
}

/* drain reads both ways at once until each side has every byte. */
static void drain(struct conn *c)
{
	while (c->cli.read < c->srv.wrote || c->srv.read < c->cli.wrote) {
		struct pollfd p[2] = { { .fd = c->cli.fd, .events = POLLIN }, { .fd = c->srv.fd, .events = POLLIN } };

		if (poll(p, 2, 10000) <= 0)
			fail("%s: nothing for 10 s; client read %zu of %zu bytes, server %zu of %zu", c->name,
			     c->cli.read, c->srv.wrote, c->srv.read, c->cli.wrote);
		if (p[0].revents & (POLLERR | POLLNVAL) || p[1].revents & (POLLERR | POLLNVAL))
			fail("%s: error on a socket (%#x, %#x)", c->name, p[0].revents, p[1].revents);
		take(c, &c->cli, &c->srv, "client");
		take(c, &c->srv, &c->cli, "server");
	}
}

/* eof shuts both sides down for writing: each must then read EOF. */
static void eof(struct conn *c)
{
	struct end *ends[] = { &c->cli, &c->srv };
	char b;
	int i;

	if (shutdown(c->cli.fd, SHUT_WR) || shutdown(c->srv.fd, SHUT_WR))
		fail("%s: shutdown: %s", c->name, test_strerror(errno));
	for (i = 0; i < 2; i++) {
		struct pollfd p = { .fd = ends[i]->fd, .events = POLLIN };

		if (poll(&p, 1, 10000) != 1 || read(ends[i]->fd, &b, 1) != 0)
			fail("%s: no EOF after shutdown: %s", c->name, test_strerror(errno));
	}
}

int main(void)
{
	struct conn conns[] = { { .name = "ipv4", .family = AF_INET }, { .name = "ipv6", .family = AF_INET6 } };
	unsigned char *c2s = malloc(MAXBYTES), *s2c = malloc(MAXBYTES);
	size_t i;

	test_init();
	loopback_up(); /* down in a network namespace of its own */
	if (!c2s || !s2c)
		fail("malloc: %s", test_strerror(errno));
	fill_pattern(c2s, MAXBYTES, 1);
	fill_pattern(s2c, MAXBYTES, 2);
	for (i = 0; i < 2; i++) {
		struct conn *c = &conns[i];

		c->cli.pattern = c2s;
		c->srv.pattern = s2c;
		setup(c);
		fill_both(c);
	}

	test_ready();
	test_wait_stop();

	for (i = 0; i < 2; i++) {
		drain(&conns[i]);
		eof(&conns[i]);
	}
	pass();
}
