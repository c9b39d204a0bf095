/*
 * sk_unix_abstract - unix sockets bound in the abstract namespace.
 *
 * A datagram socket srv is bound to "\0amber-sk_unix_abstract-PID-dgram";
 * cli is connected to it (connect by name: srv is not connected back) and
 * an unconnected socket anon sends to it with sendto().  Three messages
 * wait in srv's queue: from cli, from anon, from cli.  A stream listener
 * lsk is bound to "\0amber-sk_unix_abstract-PID-stream" with an accepted
 * connection (c, a) carrying data one way.
 *
 * After SIGTERM: srv and lsk have their names; srv's three messages
 * arrive in order, whole; cli is still connected to srv (getpeername, and
 * its messages arrive); anon can still send to the name; the data from c
 * arrives at a; a new client connects to lsk by name and is accepted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "zdtm.h"

static struct sockaddr_un dgram_addr, stream_addr;
static socklen_t dgram_len, stream_len;
static int srv, cli, anon, lsk, c, a;
static char buf[4096];

static socklen_t abstract(struct sockaddr_un *sa, const char *kind)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	int n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, "amber-sk_unix_abstract-%d-%s", getpid(), kind);
	return offsetof(struct sockaddr_un, sun_path) + 1 + n;
}

static void same_name(int sk, const struct sockaddr_un *want, socklen_t wlen, int peer, const char *what)
{
	struct sockaddr_un got;
	socklen_t l = sizeof(got);
	int r = peer ? getpeername(sk, (struct sockaddr *)&got, &l) : getsockname(sk, (struct sockaddr *)&got, &l);
	if (r || l != wlen || memcmp(&got, want, wlen))
		fail("%s: %s is not @%s (%s, length %u of %u)", what, peer ? "peer name" : "name", want->sun_path + 1,
		     r ? test_strerror(errno) : "differs", l, wlen);
}

static void expect_dgram(int sk, const char *msg, const char *what)
{
	ssize_t n = recv(sk, buf, sizeof(buf), MSG_DONTWAIT);
	if (n != (ssize_t)strlen(msg) || memcmp(buf, msg, n))
		fail("%s: got %zd bytes \"%.*s\" (%s), want \"%s\"", what, n, n > 0 ? (int)n : 0, buf,
		     n < 0 ? test_strerror(errno) : "", msg);
}

static void wait_in(int sk, const char *what)
{
	struct pollfd p = { .fd = sk, .events = POLLIN };
	if (poll(&p, 1, 5000) != 1)
		fail("%s: nothing arrived", what);
}

int main(void)
{
	test_init();
	dgram_len = abstract(&dgram_addr, "dgram");
	stream_len = abstract(&stream_addr, "stream");

	srv = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (srv < 0 || bind(srv, (struct sockaddr *)&dgram_addr, dgram_len))
		fail("bind datagram socket: %s", test_strerror(errno));
	cli = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (cli < 0 || connect(cli, (struct sockaddr *)&dgram_addr, dgram_len))
		fail("connect datagram socket: %s", test_strerror(errno));
	anon = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (anon < 0)
		fail("socket: %s", test_strerror(errno));
	if (send(cli, "one from cli", 12, 0) != 12 ||
	    sendto(anon, "two from anon", 13, 0, (struct sockaddr *)&dgram_addr, dgram_len) != 13 ||
	    send(cli, "three from cli", 14, 0) != 14)
		fail("send datagrams: %s", test_strerror(errno));

	lsk = socket(AF_UNIX, SOCK_STREAM, 0);
	if (lsk < 0 || bind(lsk, (struct sockaddr *)&stream_addr, stream_len) || listen(lsk, 4))
		fail("listen: %s", test_strerror(errno));
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&stream_addr, stream_len))
		fail("connect stream: %s", test_strerror(errno));
	a = accept(lsk, NULL, NULL);
	if (a < 0)
		fail("accept: %s", test_strerror(errno));
	if (send(c, "stream data", 11, 0) != 11)
		fail("send stream: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	same_name(srv, &dgram_addr, dgram_len, 0, "datagram socket");
	same_name(lsk, &stream_addr, stream_len, 0, "listener");
	same_name(cli, &dgram_addr, dgram_len, 1, "connected datagram socket");
	expect_dgram(srv, "one from cli", "first queued datagram");
	expect_dgram(srv, "two from anon", "second queued datagram");
	expect_dgram(srv, "three from cli", "third queued datagram");
	if (recv(srv, buf, sizeof(buf), MSG_DONTWAIT) >= 0 || errno != EAGAIN)
		fail("more than three datagrams were queued");

	if (send(cli, "cli after", 9, 0) != 9)
		fail("send from cli after restore: %s", test_strerror(errno));
	wait_in(srv, "cli -> srv");
	expect_dgram(srv, "cli after", "cli -> srv after restore");
	if (sendto(anon, "anon after", 10, 0, (struct sockaddr *)&dgram_addr, dgram_len) != 10)
		fail("sendto from anon after restore: %s", test_strerror(errno));
	wait_in(srv, "anon -> srv");
	expect_dgram(srv, "anon after", "anon -> srv after restore");

	if (recv(a, buf, sizeof(buf), MSG_DONTWAIT) != 11 || memcmp(buf, "stream data", 11))
		fail("stream data sent before the dump did not arrive: %s", test_strerror(errno));
	int c2 = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c2 < 0 || connect(c2, (struct sockaddr *)&stream_addr, stream_len))
		fail("connect to the restored listener: %s", test_strerror(errno));
	int a2 = accept(lsk, NULL, NULL);
	if (a2 < 0 || send(c2, "hi", 2, 0) != 2 || recv(a2, buf, sizeof(buf), 0) != 2)
		fail("new connection to the restored listener: %s", test_strerror(errno));
	pass();
}
