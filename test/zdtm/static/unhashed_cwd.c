/*
 * unhashed_cwd - a process whose working directory is the /proc
 * directory of a child that has since died and been reaped (zdtm
 * unhashed_proc). No path reaches that directory any more: a restore
 * makes it again with a helper task of that pid that dies once the
 * directory is open, as CRIU does, and the process must find its working
 * directory as it was.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

int main(void)
{
	char dir[64], before[PATH_MAX], after[PATH_MAX], buf[PATH_MAX];
	ssize_t n;
	pid_t child;

	test_init();
	child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		pause();
		return 0;
	}
	snprintf(dir, sizeof(dir), "/proc/%d", child);
	if (chdir(dir))
		fail("chdir %s: %s", dir, strerror(errno));
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	if (getcwd(buf, sizeof(buf)) || errno != ENOENT)
		fail("getcwd in a dead process's directory did not fail with ENOENT");
	n = readlink("/proc/self/cwd", before, sizeof(before) - 1);
	if (n < 0)
		fail("readlink /proc/self/cwd: %s", strerror(errno));
	before[n] = 0;
	test_ready();
	test_wait_stop();
	if (getcwd(buf, sizeof(buf)) || errno != ENOENT)
		fail("getcwd now succeeds: the working directory changed");
	n = readlink("/proc/self/cwd", after, sizeof(after) - 1);
	if (n < 0)
		fail("readlink /proc/self/cwd: %s", strerror(errno));
	after[n] = 0;
	if (strcmp(before, after))
		fail("working directory %s, was %s", after, before);
	pass();
}
