/*
 * tcp_closed00 - TCP sockets whose connection ended while the process
 * holds them (CRIU's socket-tcp-close2): both ends shut down for writing,
 * the FINs exchanged, each socket is in TCP_CLOSE, shut down both ways,
 * still bound to its address, which the connection's TIME_WAIT holds
 * too. Dumped and restored without options.
 *
 * Beside them, a socket that never connected (also TCP_CLOSE, polling
 * POLLHUP all the same) and the listener, kept at a descriptor above
 * theirs: it binds its port again after the server's end.
 *
 * After SIGTERM: each ended socket is in TCP_CLOSE at the same address,
 * with the same peer's (SO_PEERNAME), reads end-of-file, polls POLLHUP
 * and fails a write with EPIPE; the socket that never connected connects
 * to the listener and carries a byte.
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
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

struct end {
	const char *name;
	int fd;
	struct sockaddr_in addr, peer;
};

static void addr_of(struct end *e, struct sockaddr_in *sa)
{
	socklen_t len = sizeof(*sa);

	if (getsockname(e->fd, (struct sockaddr *)sa, &len))
		fail("%s: getsockname: %s", e->name, test_strerror(errno));
}

/* peer_of is the peer's address an ended socket keeps (SO_PEERNAME
 * tells it in TCP_CLOSE, getpeername not). */
static void peer_of(struct end *e, struct sockaddr_in *sa)
{
	socklen_t len = sizeof(*sa);

	if (getsockopt(e->fd, SOL_SOCKET, SO_PEERNAME, sa, &len))
		fail("%s: SO_PEERNAME: %s", e->name, test_strerror(errno));
}

static void check(struct end *e)
{
	struct pollfd p = { .fd = e->fd, .events = POLLIN | POLLOUT };
	struct sockaddr_in now;
	char b;
	ssize_t r;

	if (tcp_state(e->fd, e->name) != TCP_CLOSE)
		fail("%s: state %d after restore, not TCP_CLOSE", e->name, tcp_state(e->fd, e->name));
	addr_of(e, &now);
	if (now.sin_port != e->addr.sin_port || now.sin_addr.s_addr != e->addr.sin_addr.s_addr)
		fail("%s: bound to port %d after restore, %d before", e->name, ntohs(now.sin_port), ntohs(e->addr.sin_port));
	peer_of(e, &now);
	if (now.sin_port != e->peer.sin_port || now.sin_addr.s_addr != e->peer.sin_addr.s_addr)
		fail("%s: its peer's port is %d after restore, %d before", e->name, ntohs(now.sin_port), ntohs(e->peer.sin_port));
	r = read(e->fd, &b, 1);
	if (r != 0)
		fail("%s: read %zd (%s), want end-of-file", e->name, r, r < 0 ? test_strerror(errno) : "data");
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLHUP))
		fail("%s: poll revents %#x, want POLLHUP", e->name, p.revents);
	errno = 0;
	if (write(e->fd, &b, 1) != -1 || errno != EPIPE)
		fail("%s: write did not fail with EPIPE (%s)", e->name, test_strerror(errno));
}

int main(void)
{
	struct end ends[2] = { { .name = "client" }, { .name = "server" } };
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	struct timespec ms = { 0, 1000 * 1000 };
	int lsn, fresh, srv, i;
	char c;

	test_init();
	loopback_up(); /* down in a network namespace of its own */
	signal(SIGPIPE, SIG_IGN);
	lsn = socket(AF_INET, SOCK_STREAM, 0);
	ends[0].fd = socket(AF_INET, SOCK_STREAM, 0);
	if (lsn < 0 || ends[0].fd < 0)
		fail("socket: %s", test_strerror(errno));
	if (bind(lsn, (struct sockaddr *)&sa, sizeof(sa)) || listen(lsn, 1) || getsockname(lsn, (struct sockaddr *)&sa, &len))
		fail("listener: %s", test_strerror(errno));
	if (connect(ends[0].fd, (struct sockaddr *)&sa, sizeof(sa)))
		fail("connect: %s", test_strerror(errno));
	ends[1].fd = accept(lsn, NULL, NULL);
	if (ends[1].fd < 0)
		fail("accept: %s", test_strerror(errno));
	fresh = socket(AF_INET, SOCK_STREAM, 0);
	if (fresh < 0)
		fail("socket: %s", test_strerror(errno));
	/* Above the ended sockets, so that it is bound again after them. */
	i = dup2(lsn, 100);
	if (i < 0)
		fail("dup2: %s", test_strerror(errno));
	close(lsn);
	lsn = i;
	for (i = 0; i < 2; i++)
		addr_of(&ends[i], &ends[i].addr);
	if (shutdown(ends[0].fd, SHUT_WR) || shutdown(ends[1].fd, SHUT_WR))
		fail("shutdown: %s", test_strerror(errno));
	for (i = 0; tcp_state(ends[0].fd, ends[0].name) != TCP_CLOSE || tcp_state(ends[1].fd, ends[1].name) != TCP_CLOSE; i++) {
		if (i == 10000)
			fail("not closed after both FINs (states %d, %d)", tcp_state(ends[0].fd, ends[0].name), tcp_state(ends[1].fd, ends[1].name));
		nanosleep(&ms, NULL);
	}
	for (i = 0; i < 2; i++)
		peer_of(&ends[i], &ends[i].peer);

	test_ready();
	test_wait_stop();

	for (i = 0; i < 2; i++)
		check(&ends[i]);
	if (connect(fresh, (struct sockaddr *)&sa, sizeof(sa)))
		fail("the socket that never connected cannot connect after restore: %s", test_strerror(errno));
	srv = accept(lsn, NULL, NULL);
	if (srv < 0 || write(fresh, "x", 1) != 1 || read(srv, &c, 1) != 1 || c != 'x')
		fail("the new connection does not carry a byte: %s", test_strerror(errno));
	pass();
}
