/*
 * ns_pid - the init of a pid namespace of its own, with a child and a
 * grandchild, keeps its pids inside the namespace: after restore it is
 * still pid 1 there, and its descendants have the pids and parents they
 * had (CRIU restores a container's init this way).
 *
 * The driver starts it with CLONE_NEWPID.  After SIGTERM it tells the
 * child and the grandchild (SIGUSR1) to check getpid() and getppid()
 * against what they were before, and collects their verdicts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

/* wait_usr1 blocks until SIGUSR1 comes. */
static void wait_usr1(void)
{
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigwait(&set, &sig);
}

/* same exits 1 with a message unless the caller has pid and ppid. */
static void same(const char *who, pid_t pid, pid_t ppid)
{
	if (getpid() != pid || getppid() != ppid) {
		printf("FAIL: %s: pid %d, parent %d; want %d, %d\n", who, getpid(), getppid(), pid, ppid);
		fflush(stdout);
		_exit(1);
	}
}

int main(void)
{
	int ready[2], status;
	pid_t child, grandchild, self;
	sigset_t set;

	test_init();
	self = getpid();
	if (self != 1)
		fail("pid %d: not the init of a pid namespace (start it with CLONE_NEWPID)", self);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	if (pipe(ready))
		fail("pipe: %s", strerror(errno));
	child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		pid_t me = getpid();

		grandchild = fork();
		if (grandchild < 0)
			_exit(3);
		if (grandchild == 0) {
			pid_t mine = getpid();

			if (write(ready[1], &mine, sizeof(mine)) != sizeof(mine))
				_exit(2);
			wait_usr1();
			same("grandchild", mine, me);
			_exit(0);
		}
		wait_usr1();
		same("child", me, 1);
		if (waitpid(grandchild, &status, 0) != grandchild)
			_exit(4);
		_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 5);
	}
	close(ready[1]);
	if (read(ready[0], &grandchild, sizeof(grandchild)) != sizeof(grandchild))
		fail("grandchild did not start");
	if (child != 2 || grandchild != 3)
		fail("setup: child %d, grandchild %d, want 2 and 3 in a fresh namespace", child, grandchild);
	test_ready();
	test_wait_stop();
	if (getpid() != 1)
		fail("pid %d after restore, want 1", getpid());
	if (kill(grandchild, SIGUSR1) || kill(child, SIGUSR1))
		fail("signal child %d, grandchild %d: %s", child, grandchild, strerror(errno));
	if (waitpid(child, &status, 0) != child)
		fail("waitpid %d: %s", child, strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("child or grandchild failed its check (status %#x)", status);
	pass();
}
