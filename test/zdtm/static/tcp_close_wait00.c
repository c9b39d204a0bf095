/*
 * tcp_close_wait00 - TCP connections in CLOSE_WAIT (the peer closed, the
 * process has not), the peer's end closed by the process itself; dumped
 * and restored with --tcp-established (CRIU's socket-tcp-close-wait
 * without its closed peer in the tree).
 *
 * For IPv4 (127.0.0.1) with 100,000 bytes the server has not read, and
 * IPv6 (::1) with none: a listener, a client connected to it, the
 * connection accepted; the client writes its bytes and closes, and the
 * server's end waits in CLOSE_WAIT.
 *
 * After SIGTERM: the server's end is still in CLOSE_WAIT, at the same
 * addresses; it reads every byte, in order, then EOF; it still polls
 * readable with POLLRDHUP.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define C2S 100000

struct conn {
	const char *name;
	int family;
	size_t bytes; /* the client writes before it closes */
	int srv;
	struct sockaddr_storage srv_addr, cli_addr;
};

static unsigned char c2s[C2S], in[C2S + 1];

static socklen_t addr_len(int family)
{
	return family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static void setup(struct conn *c)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct timespec ms = { 0, 1000 * 1000 };
	int lsn, cli, i;

	memset(&ss, 0, sizeof(ss));
	ss.ss_family = c->family;
	if (c->family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else
		((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
	lsn = socket(c->family, SOCK_STREAM, 0);
	cli = socket(c->family, SOCK_STREAM, 0);
	if (lsn < 0 || cli < 0)
		fail("%s: socket: %s", c->name, test_strerror(errno));
	if (bind(lsn, (struct sockaddr *)&ss, addr_len(c->family)) || listen(lsn, 1))
		fail("%s: bind/listen: %s", c->name, test_strerror(errno));
	if (getsockname(lsn, (struct sockaddr *)&ss, &len))
		fail("%s: getsockname: %s", c->name, test_strerror(errno));
	if (connect(cli, (struct sockaddr *)&ss, len))
		fail("%s: connect: %s", c->name, test_strerror(errno));
	c->srv = accept(lsn, NULL, NULL);
	if (c->srv < 0)
		fail("%s: accept: %s", c->name, test_strerror(errno));
	close(lsn);
	len = sizeof(c->srv_addr);
	if (getsockname(c->srv, (struct sockaddr *)&c->srv_addr, &len))
		fail("%s: getsockname: %s", c->name, test_strerror(errno));
	len = sizeof(c->cli_addr);
	if (getpeername(c->srv, (struct sockaddr *)&c->cli_addr, &len))
		fail("%s: getpeername: %s", c->name, test_strerror(errno));
	if (c->bytes && write(cli, c2s, c->bytes) != (ssize_t)c->bytes)
		fail("%s: client write: %s", c->name, test_strerror(errno));
	close(cli);
	for (i = 0; tcp_state(c->srv, c->name) != TCP_CLOSE_WAIT; i++) {
		if (i == 10000)
			fail("%s: not in CLOSE_WAIT after the client closed (state %d)", c->name, tcp_state(c->srv, c->name));
		nanosleep(&ms, NULL);
	}
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

static void check(struct conn *c)
{
	struct pollfd p = { .fd = c->srv, .events = POLLIN | POLLRDHUP };
	size_t got = 0;
	ssize_t r;

	if (tcp_state(c->srv, c->name) != TCP_CLOSE_WAIT)
		fail("%s: state %d after restore, not CLOSE_WAIT", c->name, tcp_state(c->srv, c->name));
	same_addr(c->srv, 0, &c->srv_addr, "address", c->name);
	same_addr(c->srv, 1, &c->cli_addr, "peer", c->name);
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLRDHUP) || !(p.revents & POLLIN))
		fail("%s: poll %#x, want POLLIN|POLLRDHUP", c->name, p.revents);
	while ((r = read(c->srv, in + got, sizeof(in) - got)) > 0)
		got += r;
	if (r < 0)
		fail("%s: read after %zu bytes: %s", c->name, got, test_strerror(errno));
	if (got != c->bytes)
		fail("%s: %zu bytes before EOF, the client wrote %zu", c->name, got, c->bytes);
	expect_pattern(in, got, 1, c->name);
	if (read(c->srv, in, 1) != 0)
		fail("%s: no EOF again", c->name);
}

int main(void)
{
	struct conn conns[] = { { .name = "ipv4", .family = AF_INET, .bytes = C2S },
				{ .name = "ipv6", .family = AF_INET6, .bytes = 0 } };
	size_t i;

	test_init();
	fill_pattern(c2s, C2S, 1);
	for (i = 0; i < 2; i++)
		setup(&conns[i]);

	test_ready();
	test_wait_stop();

	for (i = 0; i < 2; i++)
		check(&conns[i]);
	pass();
}
