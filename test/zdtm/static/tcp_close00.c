/*
 * tcp_close00 - TCP connections restored closed (CRIU's socket-tcp-close0
 * and socket-tcp-close2): dumped with --tcp-close (or --tcp-established)
 * and restored with --tcp-close.
 *
 * For IPv4 (127.0.0.1) and IPv6 (::1): a listener, a client connected to
 * it and the connection accepted, with bytes queued unread both ways.
 *
 * After SIGTERM: both ends of each connection are closed sockets: state
 * TCP_CLOSE, a read returns end-of-file at once, poll says POLLHUP, a
 * write fails with EPIPE (SIGPIPE ignored). The listener still listens:
 * a new connection to it is accepted and carries bytes both ways.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtm.h"

struct conn {
	const char *name;
	int family;
	int lsn, cli, srv;
	struct sockaddr_storage addr; /* the listener's */
	socklen_t len;
};

static void loopback(int family, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	ss->ss_family = family;
	if (family == AF_INET)
		((struct sockaddr_in *)ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else
		((struct sockaddr_in6 *)ss)->sin6_addr = in6addr_loopback;
}

/* connect_pair connects a new client to c's listener and accepts it. */
static void connect_pair(struct conn *c, int *cli, int *srv)
{
	*cli = socket(c->family, SOCK_STREAM, 0);
	if (*cli < 0)
		fail("%s: socket: %s", c->name, test_strerror(errno));
	if (connect(*cli, (struct sockaddr *)&c->addr, c->len))
		fail("%s: connect: %s", c->name, test_strerror(errno));
	*srv = accept(c->lsn, NULL, NULL);
	if (*srv < 0)
		fail("%s: accept: %s", c->name, test_strerror(errno));
}

static void setup(struct conn *c)
{
	loopback(c->family, &c->addr);
	c->len = c->family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	c->lsn = socket(c->family, SOCK_STREAM, 0);
	if (c->lsn < 0)
		fail("%s: socket: %s", c->name, test_strerror(errno));
	if (bind(c->lsn, (struct sockaddr *)&c->addr, c->len) || listen(c->lsn, 4))
		fail("%s: bind/listen: %s", c->name, test_strerror(errno));
	if (getsockname(c->lsn, (struct sockaddr *)&c->addr, &c->len))
		fail("%s: getsockname: %s", c->name, test_strerror(errno));
	connect_pair(c, &c->cli, &c->srv);
	/* Bytes in flight both ways: --tcp-close drops them. */
	if (write(c->cli, "client", 6) != 6 || write(c->srv, "server", 6) != 6)
		fail("%s: write: %s", c->name, test_strerror(errno));
}

static void check_closed(int fd, const char *name, const char *end)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT };
	char b[8];
	ssize_t r;

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		fail("%s %s: TCP_INFO: %s", name, end, test_strerror(errno));
	if (ti.tcpi_state != TCP_CLOSE)
		fail("%s %s: state %d after restore, not TCP_CLOSE", name, end, ti.tcpi_state);
	r = recv(fd, b, sizeof(b), MSG_DONTWAIT);
	if (r != 0)
		fail("%s %s: recv %zd (%s), want end-of-file", name, end, r, r < 0 ? test_strerror(errno) : "data");
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLHUP))
		fail("%s %s: poll revents %#x, want POLLHUP", name, end, p.revents);
	errno = 0;
	if (send(fd, "x", 1, MSG_DONTWAIT) != -1 || errno != EPIPE)
		fail("%s %s: send did not fail with EPIPE (%s)", name, end, test_strerror(errno));
}

/* check_listener makes a new connection and passes bytes both ways. */
static void check_listener(struct conn *c)
{
	int cli, srv;
	char b[4];

	connect_pair(c, &cli, &srv);
	if (write(cli, "ping", 4) != 4 || read(srv, b, 4) != 4 || memcmp(b, "ping", 4))
		fail("%s: new connection: client to server", c->name);
	if (write(srv, "pong", 4) != 4 || read(cli, b, 4) != 4 || memcmp(b, "pong", 4))
		fail("%s: new connection: server to client", c->name);
	close(cli);
	close(srv);
}

int main(void)
{
	struct conn conns[] = { { .name = "ipv4", .family = AF_INET }, { .name = "ipv6", .family = AF_INET6 } };
	size_t i;

	test_init();
	signal(SIGPIPE, SIG_IGN);
	for (i = 0; i < 2; i++)
		setup(&conns[i]);

	test_ready();
	test_wait_stop();

	for (i = 0; i < 2; i++) {
		check_closed(conns[i].cli, conns[i].name, "client");
		check_closed(conns[i].srv, conns[i].name, "server");
		check_listener(&conns[i]);
	}
	pass();
}
