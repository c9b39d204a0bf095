/*
 * sk_unix_pair - socketpairs of the three unix types with messages in
 * flight both ways.
 *
 * Three socketpairs: SOCK_STREAM, SOCK_DGRAM and SOCK_SEQPACKET.  Before
 * `ready`, messages of different lengths (1 byte .. 100 KiB, and an empty
 * datagram) are sent both ways and left unread.  Options are set on some
 * ends: O_NONBLOCK, SO_PASSCRED, a SO_SNDBUF of its own, and one end of
 * the stream pair is shut down for writing (its peer reads EOF after the
 * data).
 *
 * After SIGTERM: every end keeps its fd number, type and options; the
 * queued messages come out in order with their boundaries (each recv of a
 * datagram or seqpacket returns one whole message), the stream's bytes in
 * order; the queues are then empty; and new messages still go both ways
 * (but on the shut-down direction).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "zdtm.h"

#define NMSG 5
static const size_t lens[NMSG] = { 1, 17, 0, 4096, 100000 };

struct pair {
	const char *name;
	int type;
	int sk[2];
};

static struct pair pairs[] = {
	{ "stream", SOCK_STREAM, { -1, -1 } },
	{ "dgram", SOCK_DGRAM, { -1, -1 } },
	{ "seqpacket", SOCK_SEQPACKET, { -1, -1 } },
};
#define NPAIRS (int)(sizeof(pairs) / sizeof(pairs[0]))

static unsigned char buf[200000];

/* Message i sent from end `from` of pair p: its seed. */
static uint64_t seed(int p, int from, int i)
{
	return 1000 * p + 100 * from + i;
}

/* An empty message only in datagrams: recv() of 0 means EOF elsewhere. */
static int sent(const struct pair *p, int i)
{
	return lens[i] != 0 || p->type == SOCK_DGRAM;
}

static void send_all(int p, int from)
{
	struct pair *pr = &pairs[p];
	for (int i = 0; i < NMSG; i++) {
		if (!sent(pr, i))
			continue;
		fill_pattern(buf, lens[i], seed(p, from, i));
		ssize_t n = send(pr->sk[from], buf, lens[i], MSG_DONTWAIT);
		if (n != (ssize_t)lens[i])
			fail("%s pair: send %zu bytes from end %d: %zd (%s)", pr->name, lens[i], from, n,
			     test_strerror(errno));
	}
}

static void recv_exact(struct pair *pr, int end, size_t want, const char *what)
{
	size_t got = 0;
	while (got < want) {
		ssize_t n = recv(pr->sk[end], buf + got, want - got, MSG_DONTWAIT);
		if (n <= 0)
			fail("%s pair end %d: %s: recv after %zu of %zu bytes: %zd (%s)", pr->name, end, what, got,
			     want, n, n < 0 ? test_strerror(errno) : "EOF");
		got += n;
	}
}

/* The messages sent from the other end arrive at `end`, in order. */
static void check_queue(int p, int end)
{
	struct pair *pr = &pairs[p];
	char what[64];
	for (int i = 0; i < NMSG; i++) {
		if (!sent(pr, i))
			continue;
		snprintf(what, sizeof(what), "message %d (%zu bytes)", i, lens[i]);
		if (pr->type == SOCK_STREAM) {
			recv_exact(pr, end, lens[i], what);
		} else {
			ssize_t n = recv(pr->sk[end], buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
			if (n != (ssize_t)lens[i])
				fail("%s pair end %d: %s: recv returned %zd (%s): boundaries lost", pr->name, end,
				     what, n, n < 0 ? test_strerror(errno) : "");
		}
		expect_pattern(buf, lens[i], seed(p, !end, i), what);
	}
}

static void expect_empty(int p, int end)
{
	struct pair *pr = &pairs[p];
	ssize_t n = recv(pr->sk[end], buf, sizeof(buf), MSG_DONTWAIT);
	/* The stream's end 1 reads EOF: end 0 shut down writing. */
	if (pr->type == SOCK_STREAM && end == 1) {
		if (n != 0)
			fail("stream pair end 1: %zd (%s) after the data, want EOF (peer shut down writing)",
			     n, n < 0 ? test_strerror(errno) : "data");
		return;
	}
	if (n >= 0 || errno != EAGAIN)
		fail("%s pair end %d: more queued than was sent: recv %zd (%s)", pr->name, end, n,
		     test_strerror(errno));
}

static int getint(int sk, int opt)
{
	int v = -1;
	socklen_t l = sizeof(v);
	if (getsockopt(sk, SOL_SOCKET, opt, &v, &l))
		fail("getsockopt %d on fd %d: %s", opt, sk, test_strerror(errno));
	return v;
}

static int sndbuf_set;

static void check_options(void)
{
	for (int p = 0; p < NPAIRS; p++)
		for (int e = 0; e < 2; e++) {
			int sk = pairs[p].sk[e];
			if (getint(sk, SO_TYPE) != pairs[p].type)
				fail("%s pair end %d (fd %d): SO_TYPE %d", pairs[p].name, e, sk, getint(sk, SO_TYPE));
			int fl = fcntl(sk, F_GETFL);
			int want_nb = (p == 1 && e == 0);
			if (fl < 0 || !!(fl & O_NONBLOCK) != want_nb || (fl & O_ACCMODE) != O_RDWR)
				fail("%s pair end %d (fd %d): F_GETFL %#x, want O_RDWR%s", pairs[p].name, e, sk, fl,
				     want_nb ? "|O_NONBLOCK" : "");
			int want_cred = (p == 2 && e == 1);
			if (!!getint(sk, SO_PASSCRED) != want_cred)
				fail("%s pair end %d: SO_PASSCRED %d, want %d", pairs[p].name, e,
				     getint(sk, SO_PASSCRED), want_cred);
		}
	if (getint(pairs[0].sk[1], SO_SNDBUF) != sndbuf_set)
		fail("stream pair end 1: SO_SNDBUF %d, want %d", getint(pairs[0].sk[1], SO_SNDBUF), sndbuf_set);
}

/* A fresh message each way (not into the shut-down direction). */
static void check_alive(int p)
{
	struct pair *pr = &pairs[p];
	for (int from = 0; from < 2; from++) {
		if (pr->type == SOCK_STREAM && from == 0)
			continue;
		if (send(pr->sk[from], "again", 5, MSG_DONTWAIT) != 5)
			fail("%s pair: send from end %d after restore: %s", pr->name, from, test_strerror(errno));
		struct pollfd pf = { .fd = pr->sk[!from], .events = POLLIN };
		if (poll(&pf, 1, 5000) != 1)
			fail("%s pair: nothing arrived at end %d", pr->name, !from);
		if (recv(pr->sk[!from], buf, sizeof(buf), MSG_DONTWAIT) != 5 || memcmp(buf, "again", 5))
			fail("%s pair: end %d did not receive \"again\"", pr->name, !from);
	}
	if (pr->type == SOCK_STREAM && send(pr->sk[0], "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) != -1)
		fail("stream pair: end 0 can send after shutdown(SHUT_WR)");
}

int main(void)
{
	test_init();
	for (int p = 0; p < NPAIRS; p++)
		if (socketpair(AF_UNIX, pairs[p].type, 0, pairs[p].sk))
			fail("socketpair %s: %s", pairs[p].name, test_strerror(errno));
	int big = 1 << 20;
	for (int p = 0; p < NPAIRS; p++)
		for (int e = 0; e < 2; e++)
			if (setsockopt(pairs[p].sk[e], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big)))
				fail("SO_SNDBUF: %s", test_strerror(errno));
	for (int p = 0; p < NPAIRS; p++) {
		send_all(p, 0);
		send_all(p, 1);
	}
	int small = 50000;
	if (setsockopt(pairs[0].sk[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)))
		fail("SO_SNDBUF: %s", test_strerror(errno));
	sndbuf_set = getint(pairs[0].sk[1], SO_SNDBUF);
	if (shutdown(pairs[0].sk[0], SHUT_WR))
		fail("shutdown: %s", test_strerror(errno));
	if (fcntl(pairs[1].sk[0], F_SETFL, O_NONBLOCK))
		fail("F_SETFL: %s", test_strerror(errno));
	int one = 1;
	if (setsockopt(pairs[2].sk[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)))
		fail("SO_PASSCRED: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	check_options();
	for (int p = 0; p < NPAIRS; p++)
		for (int e = 0; e < 2; e++) {
			check_queue(p, e);
			expect_empty(p, e);
		}
	for (int p = 0; p < NPAIRS; p++)
		check_alive(p);
	pass();
}
