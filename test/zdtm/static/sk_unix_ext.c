/*
 * sk_unix_ext - datagram sockets connected to sockets outside the dumped
 * tree (--ext-unix-sk): a process that is not our descendant (forked
 * twice, its parent gone, in a session of its own) holds E1, bound to an absolute path in the
 * cwd, and E2, bound to an abstract name. Our socket A (unnamed) is
 * connected to E1; our socket B (bound to an abstract name) is connected
 * to E2, and a message from E2 waits in B's queue.
 *
 * After SIGTERM: B reads the queued message; A's and B's peers are E1
 * and E2 (getpeername); what A and B send reaches the outside process,
 * which answers through E2 to B; another socket may not send to B (it
 * takes messages from E2 only).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

static socklen_t addr(const char *name, int abstract, struct sockaddr_un *a)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (strlen(name) + 1 > sizeof(a->sun_path) - abstract)
		fail("name %s too long", name);
	strcpy(a->sun_path + abstract, name);
	return offsetof(struct sockaddr_un, sun_path) + abstract + strlen(name) + !abstract;
}

static int dgram(void)
{
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s < 0)
		fail("socket: %s", test_strerror(errno));
	return s;
}

static void bind_to(int s, const char *name, int abstract)
{
	struct sockaddr_un a;
	socklen_t l = addr(name, abstract, &a);
	if (bind(s, (struct sockaddr *)&a, l))
		fail("bind %s: %s", name, test_strerror(errno));
}

static void connect_to(int s, const char *name, int abstract)
{
	struct sockaddr_un a;
	socklen_t l = addr(name, abstract, &a);
	if (connect(s, (struct sockaddr *)&a, l))
		fail("connect to %s: %s", name, test_strerror(errno));
}

static void say(int s, const char *msg, const char *what)
{
	if (send(s, msg, strlen(msg), 0) != (ssize_t)strlen(msg))
		fail("%s: send \"%s\": %s", what, msg, test_strerror(errno));
}

static void expect(int s, const char *msg, const char *what)
{
	char buf[64];
	ssize_t n = recv(s, buf, sizeof(buf), 0);
	if (n < 0)
		fail("%s: recv: %s", what, test_strerror(errno));
	if ((size_t)n != strlen(msg) || memcmp(buf, msg, n))
		fail("%s: got \"%.*s\", want \"%s\"", what, (int)n, buf, msg);
}

/* outside is the process outside the tree: it answers each message on
 * E1 and E2 after the restore through E2 to B, then exits. */
static void outside(int ready, const char *p1, const char *n2, const char *nb)
{
	alarm(120); /* never outlive a failed run for long */
	/* A session of its own: the restore makes ours (our PID) again. */
	if (setsid() < 0)
		fail("external: setsid: %s", test_strerror(errno));
	int e1 = dgram(), e2 = dgram();
	bind_to(e1, p1, 0);
	bind_to(e2, n2, 1);
	if (write(ready, "x", 1) != 1)
		fail("external: tell ready: %s", test_strerror(errno));
	close(ready);
	expect(e1, "before", "external E1");
	struct sockaddr_un b;
	socklen_t bl = addr(nb, 1, &b);
	if (sendto(e2, "queued", 6, 0, (struct sockaddr *)&b, bl) != 6)
		fail("external: send to B: %s", test_strerror(errno));
	expect(e1, "a-after", "external E1");
	expect(e2, "b-after", "external E2");
	if (sendto(e2, "ack", 3, 0, (struct sockaddr *)&b, bl) != 3)
		fail("external: ack to B: %s", test_strerror(errno));
	unlink(p1);
	_exit(0);
}

static void check_peer(int s, const char *name, int abstract, const char *what)
{
	struct sockaddr_un want, got;
	socklen_t wl = addr(name, abstract, &want), gl = sizeof(got);
	memset(&got, 0, sizeof(got));
	if (getpeername(s, (struct sockaddr *)&got, &gl))
		fail("%s: not connected any more: %s", what, test_strerror(errno));
	if (gl != wl || memcmp(&got, &want, wl))
		fail("%s: peer \"%s\" (%u bytes), want %s", what, got.sun_path + abstract, gl, name);
}

int main(void)
{
	char cwd[256], p1[300], n2[64], nb[64];
	test_init();
	if (!getcwd(cwd, sizeof(cwd)))
		fail("getcwd: %s", test_strerror(errno));
	snprintf(p1, sizeof(p1), "%s/ext1.sock", cwd);
	snprintf(n2, sizeof(n2), "sk_unix_ext.e2.%d", getpid());
	snprintf(nb, sizeof(nb), "sk_unix_ext.b.%d", getpid());
	unlink(p1);

	int sync[2];
	if (pipe(sync))
		fail("pipe: %s", test_strerror(errno));
	pid_t mid = fork();
	if (mid < 0)
		fail("fork: %s", test_strerror(errno));
	if (mid == 0) {
		close(sync[0]);
		pid_t ext = fork();
		if (ext < 0)
			fail("fork: %s", test_strerror(errno));
		if (ext == 0)
			outside(sync[1], p1, n2, nb);
		_exit(0); /* the outside process is orphaned: not ours */
	}
	close(sync[1]);
	int st;
	if (waitpid(mid, &st, 0) != mid || !WIFEXITED(st) || WEXITSTATUS(st))
		fail("middle child: status %#x", st);
	char c;
	if (read(sync[0], &c, 1) != 1)
		fail("the outside process did not start");
	close(sync[0]);

	int a = dgram(), b = dgram();
	connect_to(a, p1, 0);
	bind_to(b, nb, 1);
	connect_to(b, n2, 1);
	say(a, "before", "A");
	struct timeval tv = {.tv_sec = 10};
	if (setsockopt(b, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		fail("SO_RCVTIMEO: %s", test_strerror(errno));
	/* Wait for E2's message, leaving it queued for the dump. */
	if (recv(b, &c, 1, MSG_PEEK) != 1)
		fail("B: no message from E2: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	expect(b, "queued", "B's queue");
	check_peer(a, p1, 0, "A");
	check_peer(b, n2, 1, "B");
	say(a, "a-after", "A");
	say(b, "b-after", "B");
	expect(b, "ack", "B, the answer from outside");
	int other = dgram();
	struct sockaddr_un ab;
	socklen_t abl = addr(nb, 1, &ab);
	if (sendto(other, "x", 1, MSG_DONTWAIT, (struct sockaddr *)&ab, abl) >= 0 || errno != EPERM)
		fail("another socket may send to B: %s", test_strerror(errno));
	pass();
}
