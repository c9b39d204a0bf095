/*
 * tcp_half_closed00 - pairs of TCP connection ends, both in the process,
 * in the states of a close (CRIU's socket-tcp-fin-wait1, -fin-wait2,
 * -last-ack with their peers in the tree); dumped and restored with
 * --tcp-established.  Over IPv4 (127.0.0.1) and IPv6 (::1), a listener
 * and, connected through it, ends A (client) and B (server):
 *
 *  - fin_wait2: A writes 50,000 bytes and shuts down for writing, B
 *    writes 30,000; nobody reads: A in FIN_WAIT2 with B's bytes unread,
 *    B in CLOSE_WAIT with A's bytes and FIN unread;
 *  - fin_wait1: A (64 KiB send buffer) writes until B's receive queue
 *    and its own send queue are full, then shuts down for writing: A in
 *    FIN_WAIT1, its FIN behind bytes never sent; B established;
 *  - last_ack: B shuts down for writing, then A fills the queues as
 *    above and shuts down: A in LAST_ACK, B in FIN_WAIT2.
 *
 * After SIGTERM: each end in its state; each reads every byte its peer
 * wrote, in order, then EOF; B of fin_wait2 and fin_wait1 still writes
 * to A, then shuts down; A reads EOF.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <unistd.h>

#include "zdtm.h"

#define MAXBYTES (16 << 20)
#define A2B 50000
#define B2A 30000
#define MORE 5000

enum kind { FIN_WAIT2, FIN_WAIT1, LAST_ACK };

struct conn {
	const char *name;
	int family;
	enum kind kind;
	int a, b;
	size_t a2b, b2a; /* bytes written each way */
	int a_state, b_state;
};

static unsigned char *a2b_pat, *b2a_pat, buf[1 << 16];

static socklen_t addr_len(int family)
{
	return family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static void connect_pair(struct conn *c)
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
	c->a = socket(c->family, SOCK_STREAM, 0);
	if (lsn < 0 || c->a < 0)
		fail("%s: socket: %s", c->name, test_strerror(errno));
	if (bind(lsn, (struct sockaddr *)&ss, addr_len(c->family)) || listen(lsn, 1))
		fail("%s: bind/listen: %s", c->name, test_strerror(errno));
	if (getsockname(lsn, (struct sockaddr *)&ss, &len))
		fail("%s: getsockname: %s", c->name, test_strerror(errno));
	if (connect(c->a, (struct sockaddr *)&ss, len))
		fail("%s: connect: %s", c->name, test_strerror(errno));
	c->b = accept(lsn, NULL, NULL);
	if (c->b < 0)
		fail("%s: accept: %s", c->name, test_strerror(errno));
	close(lsn);
}

static void shut(int fd, const char *name)
{
	if (shutdown(fd, SHUT_WR))
		fail("%s: shutdown: %s", name, test_strerror(errno));
}

/* fill_a writes from A until neither queue takes a byte more. */
static void fill_a(struct conn *c)
{
	int size = 64 << 10;

	if (setsockopt(c->a, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)) ||
	    fcntl(c->a, F_SETFL, fcntl(c->a, F_GETFL) | O_NONBLOCK))
		fail("%s: SO_SNDBUF/O_NONBLOCK: %s", c->name, test_strerror(errno));
	for (;;) {
		ssize_t r = write(c->a, a2b_pat + c->a2b, 4096);

		if (r < 0 && errno == EAGAIN)
			break;
		if (r <= 0 || c->a2b + 8192 > MAXBYTES)
			fail("%s: write after %zu bytes: %s", c->name, c->a2b, test_strerror(errno));
		c->a2b += r;
	}
	if (fcntl(c->a, F_SETFL, fcntl(c->a, F_GETFL) & ~O_NONBLOCK))
		fail("%s: O_NONBLOCK: %s", c->name, test_strerror(errno));
}

static void setup(struct conn *c)
{
	connect_pair(c);
	switch (c->kind) {
	case FIN_WAIT2:
		c->a2b = A2B;
		c->b2a = B2A;
		if (write(c->a, a2b_pat, A2B) != A2B || write(c->b, b2a_pat, B2A) != B2A)
			fail("%s: write: %s", c->name, test_strerror(errno));
		shut(c->a, c->name);
		c->a_state = TCP_FIN_WAIT2;
		c->b_state = TCP_CLOSE_WAIT;
		break;
	case FIN_WAIT1:
		fill_a(c);
		shut(c->a, c->name);
		c->a_state = TCP_FIN_WAIT1;
		c->b_state = TCP_ESTABLISHED;
		break;
	case LAST_ACK:
		shut(c->b, c->name);
		tcp_wait_state(c->a, TCP_CLOSE_WAIT, 10000, c->name);
		fill_a(c);
		shut(c->a, c->name);
		c->a_state = TCP_LAST_ACK;
		c->b_state = TCP_FIN_WAIT2;
		break;
	}
	tcp_wait_state(c->a, c->a_state, 10000, c->name);
	tcp_wait_state(c->b, c->b_state, 10000, c->name);
}

/* describe says what TCP_INFO tells of fd's windows and timers, for a
 * message. */
static const char *describe(int fd)
{
	static char out[256];
	int inq, outq, notsent;
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return test_strerror(errno);
	if (ioctl(fd, SIOCINQ, &inq) || ioctl(fd, SIOCOUTQ, &outq) || ioctl(fd, SIOCOUTQNSD, &notsent))
		return test_strerror(errno);
	snprintf(out, sizeof(out), "state %d, unacked %u, rto %u us, backoff %u, probes %u, in %d, out %d (not sent %d)",
		 ti.tcpi_state, ti.tcpi_unacked, ti.tcpi_rto, ti.tcpi_backoff, ti.tcpi_probes, inq, outq, notsent);
	return out;
}

/* read_all reads from fd, up to 4 s (all six pairs must be checked
 * before the test's 10 s are over), n bytes of pattern pat, then EOF;
 * peer is the other end, described on failure. */
static void read_all(int fd, int peer, const unsigned char *pat, size_t n, const char *what)
{
	size_t got = 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char self[256];
		ssize_t r;

		if (poll(&p, 1, 4000) != 1) {
			snprintf(self, sizeof(self), "%s", describe(fd));
			fail("%s: %zu of %zu bytes, then nothing for 4 s (reader: %s; writer: %s)", what, got, n, self,
			     describe(peer));
		}
		r = read(fd, buf, sizeof(buf));
		if (r < 0)
			fail("%s: read after %zu of %zu bytes: %s", what, got, n, test_strerror(errno));
		if (r == 0)
			break;
		if (got + r > n || memcmp(buf, pat + got, r))
			fail("%s: bytes %zu-%zu are not what the peer wrote (%zu in all)", what, got, got + r, n);
		got += r;
	}
	if (got != n)
		fail("%s: EOF after %zu of %zu bytes", what, got, n);
}

static void check(struct conn *c)
{
	char what[64];

	if (tcp_state(c->a, c->name) != c->a_state || tcp_state(c->b, c->name) != c->b_state)
		fail("%s: states %d and %d after restore, want %d and %d", c->name, tcp_state(c->a, c->name),
		     tcp_state(c->b, c->name), c->a_state, c->b_state);
	snprintf(what, sizeof(what), "%s: A to B", c->name);
	read_all(c->b, c->a, a2b_pat, c->a2b, what);
	if (c->kind != LAST_ACK) {
		if (write(c->b, b2a_pat + c->b2a, MORE) != MORE)
			fail("%s: B writes after restore: %s", c->name, test_strerror(errno));
		c->b2a += MORE;
		shut(c->b, c->name);
	}
	snprintf(what, sizeof(what), "%s: B to A", c->name);
	read_all(c->a, c->b, b2a_pat, c->b2a, what);
}

int main(void)
{
	struct conn conns[] = {
		{ .name = "ipv4 fin_wait2", .family = AF_INET, .kind = FIN_WAIT2 },
		{ .name = "ipv6 fin_wait2", .family = AF_INET6, .kind = FIN_WAIT2 },
		{ .name = "ipv4 fin_wait1", .family = AF_INET, .kind = FIN_WAIT1 },
		{ .name = "ipv6 fin_wait1", .family = AF_INET6, .kind = FIN_WAIT1 },
		{ .name = "ipv4 last_ack", .family = AF_INET, .kind = LAST_ACK },
		{ .name = "ipv6 last_ack", .family = AF_INET6, .kind = LAST_ACK },
	};
	size_t i, n = sizeof(conns) / sizeof(conns[0]);

	test_init();
	loopback_up(); /* down in a network namespace of its own */
	a2b_pat = malloc(MAXBYTES);
	b2a_pat = malloc(MAXBYTES);
	if (!a2b_pat || !b2a_pat)
		fail("malloc: %s", test_strerror(errno));
	fill_pattern(a2b_pat, MAXBYTES, 1);
	fill_pattern(b2a_pat, MAXBYTES, 2);
	for (i = 0; i < n; i++)
		setup(&conns[i]);

	test_ready();
	test_wait_stop();

	for (i = 0; i < n; i++)
		check(&conns[i]);
	pass();
}
