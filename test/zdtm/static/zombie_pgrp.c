/*
 * zombie_pgrp - zombies keep their process group (CRIU's zombie01).
 *
 * C makes a group of its own, starts Z as a sibling (CLONE_PARENT) in
 * that group, and exits; once C is reaped, no process leads Z's group.
 * Y leads a group of its own and exits.  Z and Y stay unreaped zombies.
 * After SIGTERM getpgid must give C's PID for Z and Y's own for Y, and
 * both must still be zombies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

/* wait_zombie waits until pid is a zombie, without reaping it. */
static void wait_zombie(pid_t pid, const char *who)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, pid, &si, WEXITED | WNOWAIT) || si.si_pid != pid)
		fail("%s (%d) is not a zombie: %s", who, pid, strerror(errno));
}

int main(void)
{
	int report[2];
	pid_t c, y, z;

	test_init();
	if (pipe(report))
		fail("pipe: %s", strerror(errno));
	c = fork();
	if (c < 0)
		fail("fork: %s", strerror(errno));
	if (c == 0) {
		if (setpgid(0, 0))
			_exit(1);
		z = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
		if (z == 0)
			syscall(SYS_exit_group, 0);
		_exit(z < 0 || write(report[1], &z, sizeof(z)) != sizeof(z));
	}
	if (read(report[0], &z, sizeof(z)) != sizeof(z))
		fail("no zombie from C");
	if (waitpid(c, NULL, 0) != c)
		fail("reap C: %s", strerror(errno));
	y = fork();
	if (y < 0)
		fail("fork: %s", strerror(errno));
	if (y == 0) {
		setpgid(0, 0);
		_exit(3);
	}
	wait_zombie(z, "Z");
	wait_zombie(y, "Y");
	if (getpgid(z) != c || getpgid(y) != y)
		fail("setup: groups %d and %d", getpgid(z), getpgid(y));
	test_ready();
	test_wait_stop();
	wait_zombie(z, "Z");
	wait_zombie(y, "Y");
	if (getpgid(z) != c)
		fail("zombie Z (%d) in group %d after restore, want %d", z, getpgid(z), c);
	if (getpgid(y) != y)
		fail("zombie Y (%d) in group %d after restore, want its own", y, getpgid(y));
	pass();
}
