/*
 * sk_unix_self - datagram sockets connected to themselves: one bound to
 * "self.sock" (relative: in the cwd), one to an abstract name, each with
 * a message it sent itself still queued.
 *
 * After SIGTERM: each reads its queued message, its peer is itself
 * (getpeername gives its own name), what it sends comes back to it, and
 * another socket that sends to its name is refused (EPERM: a connected
 * datagram socket takes messages from its peer only).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "zdtm.h"

static socklen_t addr(const char *name, int abstract, struct sockaddr_un *a)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	strcpy(a->sun_path + abstract, name);
	return offsetof(struct sockaddr_un, sun_path) + abstract + strlen(name) + !abstract;
}

static int self_connected(const char *name, int abstract)
{
	struct sockaddr_un a;
	socklen_t l = addr(name, abstract, &a);
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a, l) || connect(s, (struct sockaddr *)&a, l))
		fail("%s: bind and connect to itself: %s", name, test_strerror(errno));
	return s;
}

static void expect(int s, const char *msg, const char *what)
{
	char buf[64];
	ssize_t n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
	if (n < 0)
		fail("%s: recv: %s", what, test_strerror(errno));
	if ((size_t)n != strlen(msg) || memcmp(buf, msg, n))
		fail("%s: got \"%.*s\", want \"%s\"", what, (int)n, buf, msg);
}

static void say(int s, const char *msg)
{
	if (send(s, msg, strlen(msg), MSG_DONTWAIT) != (ssize_t)strlen(msg))
		fail("send \"%s\": %s", msg, test_strerror(errno));
}

static void check(int s, const char *name, int abstract)
{
	struct sockaddr_un want, got;
	socklen_t wl = addr(name, abstract, &want), gl = sizeof(got);
	memset(&got, 0, sizeof(got));
	expect(s, "before", name);
	if (getpeername(s, (struct sockaddr *)&got, &gl))
		fail("%s: not connected any more: %s", name, test_strerror(errno));
	if (gl != wl || memcmp(&got, &want, wl))
		fail("%s: peer \"%s\" (%u bytes), want itself", name, got.sun_path + abstract, gl);
	say(s, "after");
	expect(s, "after", name);
	int other = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (sendto(other, "x", 1, MSG_DONTWAIT, (struct sockaddr *)&want, wl) >= 0 || errno != EPERM)
		fail("%s: another socket may send to it: %s", name, test_strerror(errno));
	close(other);
}

int main(void)
{
	test_init();
	unlink("self.sock");
	int path = self_connected("self.sock", 0);
	int abs = self_connected("sk_unix_self", 1);
	say(path, "before");
	say(abs, "before");

	test_ready();
	test_wait_stop();

	check(path, "self.sock", 0);
	check(abs, "sk_unix_self", 1);
	pass();
}
