/*
 * netns_sub_sk - tasks in two network namespaces, each holding sockets
 * of the other one.
 *
 * The root R, started in a network namespace of its own (NR), binds a
 * datagram socket to the abstract name "R" and a TCP listener to
 * 127.0.0.1:P. Its child A unshares a new namespace (NA), keeps R's two
 * sockets (sockets of NR held in NA), binds "A" and a listener on
 * 127.0.0.1:P, the same port, in NA. A's child B enters NR again
 * (setns to R's namespace) and keeps A's two sockets, which A closes:
 * sockets of NA held in NR only.
 *
 * After SIGTERM (R passes it to A, A to B), each checks:
 *   - its namespace: A's is not R's, B's is R's;
 *   - the namespace of every socket it holds (SIOCGSKNS), against its
 *     parent's or its own;
 *   - the abstract names and listeners it reaches: in NR "R" and
 *     127.0.0.1:P (R's listener, held by R), not "A"; in NA "A" and
 *     127.0.0.1:P (A's listener, held by B alone), not "R".
 * A task that finds a fault says why on stderr and exits 1; R prints
 * PASS only if every task passed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

static const char *me = "R";
static int errors;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "netns_sub_sk %s (pid %d): ", me, getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	errors++;
}

/* abstract names "netns_sub_sk-R" and "netns_sub_sk-A". */
static socklen_t name_of(const char *who, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, "netns_sub_sk-%s", who);
	return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sa->sun_path + 1);
}

static int bind_name(const char *who)
{
	struct sockaddr_un sa;
	socklen_t len = name_of(who, &sa);
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);

	if (s < 0 || bind(s, (struct sockaddr *)&sa, len))
		fail("bind %s: %s", who, strerror(errno));
	return s;
}

static int listen_on(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int s = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 8))
		fail("listen on 127.0.0.1:%d: %s", port, strerror(errno));
	return s;
}

static int port_of(int s)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	if (getsockname(s, (struct sockaddr *)&a, &len))
		fail("getsockname: %s", strerror(errno));
	return ntohs(a.sin_port);
}

/* reach_name tells whether a datagram socket can connect to name who. */
static void reach_name(const char *who, int want)
{
	struct sockaddr_un sa;
	socklen_t len = name_of(who, &sa);
	int s = socket(AF_UNIX, SOCK_DGRAM, 0), got;

	got = connect(s, (struct sockaddr *)&sa, len) == 0;
	if (got != want)
		note("abstract name %s: reached %d, want %d", who, got, want);
	close(s);
}

static void reach_port(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int s = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(s, (struct sockaddr *)&a, sizeof(a)))
		note("connect to 127.0.0.1:%d: %s", port, strerror(errno));
	close(s);
}

static ino_t ns_of_pid(pid_t pid)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
	if (stat(path, &st))
		fail("stat %s: %s", path, strerror(errno));
	return st.st_ino;
}

/* sock_ns checks that socket s (what) is of namespace ns. */
static void sock_ns(int s, const char *what, ino_t ns)
{
	struct stat st;
	int fd = ioctl(s, SIOCGSKNS);

	if (fd < 0 || fstat(fd, &st)) {
		note("%s: SIOCGSKNS: %s", what, strerror(errno));
		return;
	}
	if (st.st_ino != ns)
		note("%s: in net:[%lu], want net:[%lu]", what, (unsigned long)st.st_ino, (unsigned long)ns);
	close(fd);
}

static void wait_child(pid_t pid)
{
	int status = 0;
	pid_t w;

	while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
		;
	if (w != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		note("child %d ended with status %#x", pid, status);
}

int main(void)
{
	int ready[2], r_name, r_listen, a_name, a_listen, port;
	pid_t root = getpid(), a, b;
	char c;

	test_init();
	loopback_up();
	if (pipe(ready))
		fail("pipe: %s", strerror(errno));
	r_name = bind_name("R");
	r_listen = listen_on(0);
	port = port_of(r_listen);

	a = fork();
	if (a < 0)
		fail("fork: %s", strerror(errno));
	if (a == 0) {
		me = "A";
		if (unshare(CLONE_NEWNET))
			fail("unshare: %s", strerror(errno));
		loopback_up();
		a_name = bind_name("A");
		a_listen = listen_on(port);
		b = fork();
		if (b < 0)
			fail("fork: %s", strerror(errno));
		if (b == 0) {
			int fd;
			char path[64];

			me = "B";
			snprintf(path, sizeof(path), "/proc/%d/ns/net", root);
			fd = open(path, O_RDONLY);
			if (fd < 0 || setns(fd, CLONE_NEWNET))
				fail("enter R's namespace: %s", strerror(errno));
			close(fd);
			close(r_name);
			close(r_listen);
			if (write(ready[1], "b", 1) != 1)
				_exit(1);
			test_wait_stop();
			sock_ns(a_name, "A's datagram socket", ns_of_pid(getppid()));
			sock_ns(a_listen, "A's listener", ns_of_pid(getppid()));
			if (ns_of_pid(getpid()) != ns_of_pid(root))
				note("not in R's network namespace");
			reach_name("R", 1);
			reach_name("A", 0);
			reach_port(port);
			_exit(errors ? 1 : 0);
		}
		close(a_name);
		close(a_listen);
		if (write(ready[1], "a", 1) != 1)
			_exit(1);
		test_wait_stop();
		if (ns_of_pid(getpid()) == ns_of_pid(getppid()))
			note("in its parent's network namespace, want one of its own");
		sock_ns(r_name, "R's datagram socket", ns_of_pid(getppid()));
		sock_ns(r_listen, "R's listener", ns_of_pid(getppid()));
		if (ns_of_pid(b) != ns_of_pid(getppid()))
			note("its child B is not in R's network namespace");
		reach_name("A", 1);
		reach_name("R", 0);
		reach_port(port); /* A's listener, held by B alone */
		kill(b, SIGTERM);
		wait_child(b);
		_exit(errors ? 1 : 0);
	}
	if (read(ready[0], &c, 1) != 1 || read(ready[0], &c, 1) != 1)
		fail("a child did not get ready");
	test_ready();
	test_wait_stop();
	sock_ns(r_name, "R's datagram socket", ns_of_pid(getpid()));
	sock_ns(r_listen, "R's listener", ns_of_pid(getpid()));
	reach_name("R", 1);
	reach_name("A", 0);
	reach_port(port);
	kill(a, SIGTERM);
	wait_child(a);
	if (errors)
		fail("%d faults, on stderr", errors);
	pass();
}
