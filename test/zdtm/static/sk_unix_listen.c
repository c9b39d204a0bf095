/*
 * sk_unix_listen - a stream listener bound to a relative path, with one
 * connection accepted and one still waiting in its backlog.
 *
 * The listener is bound to "sk_unix_listen.sock" (relative: in the cwd)
 * with backlog 7, its file chmod'ed to 0604.  Client c1 connects and is
 * accepted as a1; both send data the other has not read.  Client c2
 * connects but is not accepted yet; it sends nothing (criu and amber
 * refuse data on a connection not accepted yet).
 *
 * After SIGTERM: the listener still listens (SO_ACCEPTCONN) under its
 * name, its socket file has mode 0604; the data between c1 and a1 arrives
 * both ways and they still talk; accept() returns c2's connection at once
 * and c2 talks with it; a new client connects by the path and is
 * accepted.  (The names of the accepted sockets are not checked: like
 * criu, amber restores a connected pair as a socketpair.)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "zdtm.h"

#define NAME "sk_unix_listen.sock"

static int lsk, c1, a1, c2;
static char buf[4096];

static struct sockaddr_un addr(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	strcpy(a.sun_path, NAME);
	return a;
}

static int client(void)
{
	struct sockaddr_un a = addr();
	int c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)))
		fail("connect to %s: %s", NAME, test_strerror(errno));
	return c;
}

/* expect_msg reads exactly msg from sk. */
static void expect_msg(int sk, const char *msg, const char *what)
{
	size_t n = strlen(msg), got = 0;
	while (got < n) {
		ssize_t r = recv(sk, buf + got, n - got, MSG_DONTWAIT);
		if (r <= 0)
			fail("%s: recv after %zu of %zu bytes: %zd (%s)", what, got, n, r,
			     r < 0 ? test_strerror(errno) : "EOF");
		got += r;
	}
	if (memcmp(buf, msg, n))
		fail("%s: got \"%.*s\", want \"%s\"", what, (int)n, buf, msg);
}

static void say(int from, int to, const char *msg, const char *what)
{
	size_t n = strlen(msg);
	if (send(from, msg, n, MSG_DONTWAIT) != (ssize_t)n)
		fail("%s: send: %s", what, test_strerror(errno));
	if (to < 0)
		return;
	struct pollfd p = { .fd = to, .events = POLLIN };
	if (poll(&p, 1, 5000) != 1)
		fail("%s: nothing arrived", what);
	expect_msg(to, msg, what);
}

static void check_listener(void)
{
	int v;
	socklen_t l = sizeof(v);
	if (getsockopt(lsk, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) || !v)
		fail("fd %d does not listen any more", lsk);
	struct sockaddr_un a;
	l = sizeof(a);
	if (getsockname(lsk, (struct sockaddr *)&a, &l) || strcmp(a.sun_path, NAME))
		fail("listener's name \"%s\", want \"%s\"", a.sun_path, NAME);
	struct stat st;
	if (stat(NAME, &st) || !S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != 0604)
		fail("%s: mode %#o, want a socket with 0604", NAME, st.st_mode);
}

int main(void)
{
	test_init();
	unlink(NAME);
	struct sockaddr_un a = addr();
	lsk = socket(AF_UNIX, SOCK_STREAM, 0);
	if (lsk < 0 || bind(lsk, (struct sockaddr *)&a, sizeof(a)) || listen(lsk, 7))
		fail("listen on %s: %s", NAME, test_strerror(errno));
	if (chmod(NAME, 0604))
		fail("chmod: %s", test_strerror(errno));
	c1 = client();
	a1 = accept(lsk, NULL, NULL);
	if (a1 < 0)
		fail("accept: %s", test_strerror(errno));
	c2 = client();
	say(c1, -1, "from c1 before", "c1 -> a1");
	say(a1, -1, "from a1 before", "a1 -> c1");

	test_ready();
	test_wait_stop();

	check_listener();
	expect_msg(a1, "from c1 before", "a1 reads what c1 sent before the dump");
	expect_msg(c1, "from a1 before", "c1 reads what a1 sent before the dump");
	say(c1, a1, "c1 after", "c1 -> a1 after");
	say(a1, c1, "a1 after", "a1 -> c1 after");

	int fl = fcntl(lsk, F_GETFL);
	fcntl(lsk, F_SETFL, fl | O_NONBLOCK);
	int a2 = accept(lsk, NULL, NULL);
	if (a2 < 0)
		fail("accept of the connection waiting at the dump: %s", test_strerror(errno));
	say(c2, a2, "c2 after", "c2 -> a2");
	say(a2, c2, "a2 after", "a2 -> c2");
	if (accept(lsk, NULL, NULL) >= 0 || errno != EAGAIN)
		fail("a second connection was waiting: %s", test_strerror(errno));
	fcntl(lsk, F_SETFL, fl);

	int c3 = client();
	int a3 = accept(lsk, NULL, NULL);
	if (a3 < 0)
		fail("accept of a new client: %s", test_strerror(errno));
	say(c3, a3, "c3", "c3 -> a3");
	pass();
}
