/*
 * sk_unix_ghost - unix sockets bound to paths whose files were deleted
 * since (criu's "ghost" sockets), all by names relative to the cwd:
 *
 *   - a datagram server bound to "gd/sub/srv" with a client connected to
 *     it; then the file and the directory gd/sub are removed (gd stays);
 *   - a datagram socket bound to "q.sock" with two messages queued from
 *     an unconnected sender, then its file removed;
 *   - two stream listeners bound to "l.sock" in turn: the first one's
 *     file moved away and back over the second one's, so that the second
 *     one is the ghost and the file at l.sock the first one's;
 *   - a datagram socket bound to "f.sock", a client connected to it,
 *     its file removed and a FIFO made at f.sock and held open;
 *   - an accepted stream connection whose listener (bound to "a.sock")
 *     was closed and its file removed.
 *
 * After SIGTERM: every socket keeps its name (getsockname); the client
 * still reaches its server, the queued messages arrive in order; both
 * listeners listen, and a new client of l.sock reaches the first one
 * only; the FIFO is still at f.sock and works; the accepted pair talks
 * both ways (its name is not checked: like criu, amber makes an
 * accepted pair again as a socketpair); and the file system is as it
 * was: no gd/sub, no q.sock, no a.sock, nothing left beside them.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "zdtm.h"

static struct sockaddr_un addr(const char *name)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	strcpy(a.sun_path, name);
	return a;
}

static int bound(int type, const char *name)
{
	struct sockaddr_un a = addr(name);
	int s = socket(AF_UNIX, type, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)))
		fail("bind %s: %s", name, test_strerror(errno));
	return s;
}

static int connected(int type, const char *name)
{
	struct sockaddr_un a = addr(name);
	int s = socket(AF_UNIX, type, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)))
		fail("connect to %s: %s", name, test_strerror(errno));
	return s;
}

static void send_to(int s, const char *name, const char *msg)
{
	struct sockaddr_un a = addr(name);
	if (sendto(s, msg, strlen(msg), MSG_DONTWAIT, (struct sockaddr *)&a, sizeof(a)) != (ssize_t)strlen(msg))
		fail("send \"%s\" to %s: %s", msg, name, test_strerror(errno));
}

static void say(int from, const char *msg)
{
	if (send(from, msg, strlen(msg), MSG_DONTWAIT) != (ssize_t)strlen(msg))
		fail("send \"%s\": %s", msg, test_strerror(errno));
}

static void expect(int s, const char *msg, const char *what)
{
	char buf[256];
	ssize_t n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
	if (n < 0)
		fail("%s: recv: %s", what, test_strerror(errno));
	if ((size_t)n != strlen(msg) || memcmp(buf, msg, n))
		fail("%s: got \"%.*s\", want \"%s\"", what, (int)n, buf, msg);
}

static void expect_name(int s, const char *name)
{
	struct sockaddr_un a;
	socklen_t l = sizeof(a);
	memset(&a, 0, sizeof(a));
	if (getsockname(s, (struct sockaddr *)&a, &l) || strcmp(a.sun_path, name))
		fail("fd %d: name \"%s\", want \"%s\"", s, a.sun_path, name);
}

static void expect_gone(const char *path)
{
	struct stat st;
	if (lstat(path, &st) == 0 || errno != ENOENT)
		fail("%s: there after restore, deleted before the dump", path);
}

static void expect_listening(int s)
{
	int v;
	socklen_t l = sizeof(v);
	if (getsockopt(s, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) || !v)
		fail("fd %d does not listen any more", s);
}

/*
 * expect_clean fails if dir holds a file whose name has ".sock" in it
 * (want NULL: any file), other than those of want.
 */
static void expect_clean(const char *dir, const char *const *want)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	if (!d)
		fail("opendir %s: %s", dir, test_strerror(errno));
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		int known = want && !strstr(e->d_name, ".sock");
		for (const char *const *n = want; n && *n && !known; n++)
			known = !strcmp(e->d_name, *n);
		if (!known)
			fail("%s/%s: left behind by the restore", dir, e->d_name);
	}
	closedir(d);
}

int main(void)
{
	test_init();

	if (mkdir("gd", 0755) || mkdir("gd/sub", 0755))
		fail("mkdir: %s", test_strerror(errno));
	int srv = bound(SOCK_DGRAM, "gd/sub/srv");
	int cli = connected(SOCK_DGRAM, "gd/sub/srv");
	if (unlink("gd/sub/srv") || rmdir("gd/sub"))
		fail("remove gd/sub: %s", test_strerror(errno));

	int q = bound(SOCK_DGRAM, "q.sock");
	int sender = socket(AF_UNIX, SOCK_DGRAM, 0);
	send_to(sender, "q.sock", "first");
	send_to(sender, "q.sock", "second");
	close(sender);
	if (unlink("q.sock"))
		fail("unlink q.sock: %s", test_strerror(errno));

	int lold = bound(SOCK_STREAM, "l.sock");
	if (listen(lold, 4) || rename("l.sock", "l.tmp"))
		fail("listen, rename l.sock: %s", test_strerror(errno));
	int lnew = bound(SOCK_STREAM, "l.sock");
	if (listen(lnew, 4) || rename("l.tmp", "l.sock"))
		fail("listen, rename l.tmp: %s", test_strerror(errno));

	int fs = bound(SOCK_DGRAM, "f.sock");
	int fc = connected(SOCK_DGRAM, "f.sock");
	if (unlink("f.sock") || mkfifo("f.sock", 0600))
		fail("fifo over f.sock: %s", test_strerror(errno));
	int ff = open("f.sock", O_RDWR);
	if (ff < 0)
		fail("open the fifo: %s", test_strerror(errno));

	int la = bound(SOCK_STREAM, "a.sock");
	if (listen(la, 1))
		fail("listen a.sock: %s", test_strerror(errno));
	int ac = connected(SOCK_STREAM, "a.sock");
	int aa = accept(la, NULL, NULL);
	if (aa < 0)
		fail("accept: %s", test_strerror(errno));
	close(la);
	if (unlink("a.sock"))
		fail("unlink a.sock: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	expect_name(srv, "gd/sub/srv");
	say(cli, "to srv");
	expect(srv, "to srv", "srv reads what its client sent after restore");
	expect_gone("gd/sub");

	expect_name(q, "q.sock");
	expect(q, "first", "q's first queued message");
	expect(q, "second", "q's second queued message");
	expect_gone("q.sock");

	expect_listening(lold);
	expect_listening(lnew);
	expect_name(lold, "l.sock");
	expect_name(lnew, "l.sock");
	int lc = connected(SOCK_STREAM, "l.sock");
	fcntl(lold, F_SETFL, O_NONBLOCK);
	fcntl(lnew, F_SETFL, O_NONBLOCK);
	if (accept(lnew, NULL, NULL) >= 0 || errno != EAGAIN)
		fail("the listener whose file was gone accepted a client of l.sock: %s", test_strerror(errno));
	int la2 = accept(lold, NULL, NULL);
	if (la2 < 0)
		fail("the listener at l.sock does not accept its client: %s", test_strerror(errno));
	say(lc, "to l.sock");
	expect(la2, "to l.sock", "l.sock's new connection");

	struct stat st;
	if (stat("f.sock", &st) || !S_ISFIFO(st.st_mode))
		fail("f.sock is not the FIFO any more");
	expect_name(fs, "f.sock");
	say(fc, "to fs");
	expect(fs, "to fs", "fs reads what its client sent after restore");
	if (write(ff, "x", 1) != 1 || read(ff, &st, 1) != 1)
		fail("the fifo at f.sock: %s", test_strerror(errno));

	say(ac, "to aa");
	expect(aa, "to aa", "the accepted socket");
	say(aa, "to ac");
	expect(ac, "to ac", "the client");
	expect_gone("a.sock");

	const char *top[] = { "l.sock", "f.sock", NULL };
	expect_clean(".", top);
	expect_clean("gd", NULL);
	pass();
}
