/*
 * cwd_removed - working directories removed while in use.
 *
 * The main process's cwd is "cwd_removed.own" (mode 0750), removed, with no
 * descriptor of it.  A child's cwd is "cwd_removed.kid", removed too, and the
 * child also holds it open O_RDONLY|O_DIRECTORY; it waits on a pipe.
 *
 * After SIGTERM: the main process's cwd is a directory with nlink 0 and mode
 * 0750, and /proc/self/cwd names its old path with " (deleted)"; the child,
 * woken through the pipe, checks that its cwd and its fd are one directory
 * with nlink 0, and exits 0 if so.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define OWN "cwd_removed.own"
#define KID "cwd_removed.kid"

static int child(int rd)
{
	struct stat a, b;
	char c;

	if (mkdir(KID, 0700))
		return 2;
	int fd = open(KID, O_RDONLY | O_DIRECTORY);
	if (fd < 0 || chdir(KID) || rmdir("../" KID))
		return 3;
	if (read(rd, &c, 1) != 1)
		return 4;
	if (stat(".", &a) || fstat(fd, &b))
		return 5;
	if (!S_ISDIR(a.st_mode) || a.st_nlink != 0)
		return 6;
	if (a.st_ino != b.st_ino || a.st_dev != b.st_dev)
		return 7;
	return 0;
}

int main(void)
{
	char cwd[PATH_MAX], want[PATH_MAX + 32], got[PATH_MAX + 32];
	int p[2], status;
	struct stat st;

	test_init();
	if (!getcwd(cwd, sizeof(cwd)) || pipe(p))
		fail("getcwd, pipe: %s", test_strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		fail("fork: %s", test_strerror(errno));
	if (pid == 0) {
		close(p[1]);
		_exit(child(p[0]));
	}
	close(p[0]);
	if (mkdir(OWN, 0750) || chmod(OWN, 0750) || chdir(OWN) || rmdir("../" OWN))
		fail("mkdir, chdir, rmdir: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	if (stat(".", &st))
		fail("stat cwd: %s", test_strerror(errno));
	if (!S_ISDIR(st.st_mode) || st.st_nlink != 0 || (st.st_mode & 07777) != 0750)
		fail("cwd: mode %#o nlink %lu, want a directory 0750 with nlink 0", st.st_mode, (unsigned long)st.st_nlink);
	ssize_t n = readlink("/proc/self/cwd", got, sizeof(got) - 1);
	got[n > 0 ? n : 0] = 0;
	snprintf(want, sizeof(want), "%s/%s (deleted)", cwd, OWN);
	if (strcmp(got, want))
		fail("/proc/self/cwd is \"%s\", want \"%s\"", got, want);
	if (write(p[1], "x", 1) != 1)
		fail("wake the child: %s", test_strerror(errno));
	if (waitpid(pid, &status, 0) != pid)
		fail("waitpid: %s", test_strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("the child's removed cwd and fd: status %#x (exit code 5+ is a check that failed)", status);
	if (access(cwd, F_OK) || access(want, F_OK) == 0)
		fail("directories after restore");
	pass();
}
