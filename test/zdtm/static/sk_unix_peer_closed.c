/*
 * sk_unix_peer_closed - unix sockets whose peer has closed, with what the
 * peer sent before closing still queued.
 *
 * A SOCK_STREAM socketpair and a SOCK_DGRAM one: the second end of each
 * sends two messages and is closed.  Nothing is read before `ready`.
 *
 * After SIGTERM: the stream end reads the bytes, then EOF, and sending
 * fails with EPIPE; the datagram end reads the two messages whole, then
 * nothing (EAGAIN), and sending fails with ECONNREFUSED (the peer is gone).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtm.h"

static char buf[256];

int main(void)
{
	int st[2], dg[2];

	test_init();
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg))
		fail("socketpair: %s", test_strerror(errno));
	if (send(st[1], "stream one;", 11, 0) != 11 || send(st[1], "stream two", 10, 0) != 10 ||
	    send(dg[1], "dgram one", 9, 0) != 9 || send(dg[1], "dgram two", 9, 0) != 9)
		fail("send: %s", test_strerror(errno));
	close(st[1]);
	close(dg[1]);

	test_ready();
	test_wait_stop();

	size_t got = 0;
	ssize_t n;
	while ((n = recv(st[0], buf + got, sizeof(buf) - got, MSG_DONTWAIT)) > 0)
		got += n;
	if (n != 0 || got != 21 || memcmp(buf, "stream one;stream two", 21))
		fail("stream: read %zu bytes \"%.*s\" then %zd (%s), want the 21 bytes then EOF", got, (int)got, buf, n,
		     n < 0 ? test_strerror(errno) : "EOF");
	if (send(st[0], "x", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE)
		fail("stream: send to a closed peer: %s, want EPIPE", test_strerror(errno));

	if (recv(dg[0], buf, sizeof(buf), MSG_DONTWAIT) != 9 || memcmp(buf, "dgram one", 9) ||
	    recv(dg[0], buf, sizeof(buf), MSG_DONTWAIT) != 9 || memcmp(buf, "dgram two", 9))
		fail("dgram: the two messages did not come back whole");
	if (recv(dg[0], buf, sizeof(buf), MSG_DONTWAIT) != -1 || errno != EAGAIN)
		fail("dgram: more than two messages: %s", test_strerror(errno));
	if (send(dg[0], "x", 1, 0) != -1 || errno != ECONNREFUSED)
		fail("dgram: send to a closed peer: %s, want ECONNREFUSED", test_strerror(errno));
	pass();
}
