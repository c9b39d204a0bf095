/*
 * sk_unix_shutdown - unix sockets shut down for reading, with and without
 * messages queued: a seqpacket and a stream connection whose client shut
 * its reading side before it connected (zdtm's sockets03), and a seqpacket
 * socketpair whose reader shut down after a message came.
 *
 * After SIGTERM: each client still sends to its server, which reads the
 * message; the server's send to the shut-down client fails with EPIPE;
 * the shut-down reader gets its queued message, then end of file at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "zdtm.h"

static char buf[256];

/* shut_client connects a client shut down for reading to a listener of
 * type typ bound at path, and returns the accepted end in *srv. */
static int shut_client(int typ, const char *path, int *srv)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int l = socket(AF_UNIX, typ, 0), c = socket(AF_UNIX, typ, 0);

	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	unlink(path);
	if (l < 0 || c < 0 || bind(l, (struct sockaddr *)&addr, sizeof(addr)) || listen(l, 4))
		fail("listener %s: %s", path, test_strerror(errno));
	if (shutdown(c, SHUT_RD) || connect(c, (struct sockaddr *)&addr, sizeof(addr)))
		fail("client of %s: %s", path, test_strerror(errno));
	*srv = accept(l, NULL, NULL);
	if (*srv < 0)
		fail("accept on %s: %s", path, test_strerror(errno));
	close(l);
	return c;
}

static void check_client(const char *what, int c, int srv)
{
	if (send(c, what, strlen(what), 0) != (ssize_t)strlen(what))
		fail("%s: client send: %s", what, test_strerror(errno));
	ssize_t n = recv(srv, buf, sizeof(buf), MSG_DONTWAIT);
	if (n != (ssize_t)strlen(what) || memcmp(buf, what, n))
		fail("%s: server read %zd (%s), want the client's message", what, n, n < 0 ? test_strerror(errno) : "");
	if (send(srv, "x", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE)
		fail("%s: send to a client shut down for reading: %s, want EPIPE", what, test_strerror(errno));
	if (recv(c, buf, sizeof(buf), MSG_DONTWAIT) != 0)
		fail("%s: the shut-down client reads something: %s", what, test_strerror(errno));
}

int main(void)
{
	int sq_srv, st_srv, pr[2];

	test_init();
	int sq = shut_client(SOCK_SEQPACKET, "seqpacket.sock", &sq_srv);
	int st = shut_client(SOCK_STREAM, "stream.sock", &st_srv);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pr))
		fail("socketpair: %s", test_strerror(errno));
	if (send(pr[1], "queued", 6, 0) != 6 || shutdown(pr[0], SHUT_RD))
		fail("pair: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	check_client("seqpacket", sq, sq_srv);
	check_client("stream", st, st_srv);
	ssize_t n = recv(pr[0], buf, sizeof(buf), MSG_DONTWAIT);
	if (n != 6 || memcmp(buf, "queued", 6))
		fail("pair: read %zd (%s), want the queued message", n, n < 0 ? test_strerror(errno) : "");
	if (recv(pr[0], buf, sizeof(buf), MSG_DONTWAIT) != 0)
		fail("pair: after the queued message: %s, want end of file", test_strerror(errno));
	pass();
}
