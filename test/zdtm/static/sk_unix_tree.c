/*
 * sk_unix_tree - a socketpair whose ends live in two processes, with
 * messages in flight both ways.
 *
 * The parent makes a SOCK_SEQPACKET socketpair and a pipe, forks, and
 * keeps end 0; the child keeps end 1 (each closes the other end).  The
 * parent sends two messages to the child, the child one to the parent;
 * nobody reads them.  The child then waits in read() on the pipe.
 *
 * After SIGTERM the parent reads the child's message, wakes the child
 * through the pipe and waits for it: the child reads the parent's two
 * messages (whole, in order), answers "child ok" and exits 0, or reports
 * on stderr and exits 1.  The parent checks the answer and the child's
 * exit status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

static char buf[256];

static int expect(int sk, const char *msg)
{
	struct pollfd p = { .fd = sk, .events = POLLIN };
	if (poll(&p, 1, 5000) != 1)
		return -1;
	ssize_t n = recv(sk, buf, sizeof(buf), MSG_DONTWAIT);
	return n == (ssize_t)strlen(msg) && !memcmp(buf, msg, n) ? 0 : -1;
}

static void child(int sk, int wake)
{
	char c;
	while (read(wake, &c, 1) < 0 && errno == EINTR)
		;
	if (expect(sk, "parent 1") || expect(sk, "parent 2")) {
		fprintf(stderr, "sk_unix_tree child: the parent's messages did not arrive whole and in order\n");
		exit(1);
	}
	if (send(sk, "child ok", 8, 0) != 8) {
		fprintf(stderr, "sk_unix_tree child: send: %s\n", test_strerror(errno));
		exit(1);
	}
	exit(0);
}

int main(void)
{
	int sk[2], wake[2], status;

	test_init();
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sk) || pipe(wake))
		fail("socketpair or pipe: %s", test_strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		fail("fork: %s", test_strerror(errno));
	if (pid == 0) {
		close(sk[0]);
		close(wake[1]);
		if (send(sk[1], "child 1", 7, 0) != 7)
			exit(2);
		child(sk[1], wake[0]);
	}
	close(sk[1]);
	close(wake[0]);
	if (send(sk[0], "parent 1", 8, 0) != 8 || send(sk[0], "parent 2", 8, 0) != 8)
		fail("send: %s", test_strerror(errno));
	/* Wait until the child's message is there: all is in flight. */
	struct pollfd p = { .fd = sk[0], .events = POLLIN };
	if (poll(&p, 1, 5000) != 1)
		fail("the child's message did not come");

	test_ready();
	test_wait_stop();

	if (expect(sk[0], "child 1"))
		fail("the child's message sent before the dump did not arrive whole");
	if (write(wake[1], "w", 1) != 1)
		fail("wake the child: %s", test_strerror(errno));
	if (expect(sk[0], "child ok"))
		fail("the child did not answer \"child ok\"");
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("child %d: status %#x", pid, status);
	pass();
}
