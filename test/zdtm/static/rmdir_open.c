/*
 * rmdir_open - directories removed while open (CRIU's ghost directories).
 *
 * "rmdir_open.top/sub" (mode 0751) is opened twice, O_RDONLY|O_DIRECTORY
 * and O_PATH, then removed together with its parent "rmdir_open.top", so a
 * restore must make the parent again too.  "rmdir_open.one" (mode 0700),
 * whose parent stays, is opened O_RDONLY|O_DIRECTORY and removed.
 *
 * After SIGTERM: each fd is a directory with nlink 0, its mode, and a /proc
 * link naming its old path with " (deleted)"; the two fds of sub are one
 * inode; reading the directory fd (getdents) fails with ENOENT, as the
 * kernel answers for a removed directory; neither path, nor the
 * parent, exists again.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

#define TOP "rmdir_open.top"
#define SUB TOP "/sub"
#define ONE "rmdir_open.one"

static char cwd[PATH_MAX];

static void check_dir(int fd, mode_t mode, const char *name, const char *what)
{
	char link[64], target[PATH_MAX + 16], want[PATH_MAX + 16];
	struct stat st;

	if (fstat(fd, &st))
		fail("fstat %s: %s", what, test_strerror(errno));
	if (!S_ISDIR(st.st_mode) || st.st_nlink != 0 || (st.st_mode & 07777) != mode)
		fail("%s: mode %#o nlink %lu, want a directory %#o with nlink 0", what, st.st_mode,
		     (unsigned long)st.st_nlink, mode);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = 0;
	snprintf(want, sizeof(want), "%s/%s (deleted)", cwd, name);
	if (strcmp(target, want))
		fail("%s: /proc link \"%s\", want \"%s\"", what, target, want);
}

int main(void)
{
	struct stat a, b;
	char buf[4096];

	test_init();
	if (!getcwd(cwd, sizeof(cwd)))
		fail("getcwd: %s", test_strerror(errno));
	if (mkdir(TOP, 0700) || mkdir(SUB, 0751) || mkdir(ONE, 0700) || chmod(SUB, 0751))
		fail("mkdir: %s", test_strerror(errno));
	int sub = open(SUB, O_RDONLY | O_DIRECTORY);
	int path = open(SUB, O_PATH);
	int one = open(ONE, O_RDONLY | O_DIRECTORY);
	if (sub < 0 || path < 0 || one < 0)
		fail("open: %s", test_strerror(errno));
	if (rmdir(SUB) || rmdir(TOP) || rmdir(ONE))
		fail("rmdir: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	check_dir(sub, 0751, SUB, "sub");
	check_dir(path, 0751, SUB, "sub (O_PATH)");
	check_dir(one, 0700, ONE, "one");
	if (fstat(sub, &a) || fstat(path, &b) || a.st_ino != b.st_ino || a.st_dev != b.st_dev)
		fail("the two fds of sub are no longer one directory");
	if (!(fcntl(path, F_GETFL) & O_PATH))
		fail("the O_PATH fd lost O_PATH: flags %#o", fcntl(path, F_GETFL));
	long n = syscall(SYS_getdents64, sub, buf, sizeof(buf));
	if (n != -1 || errno != ENOENT)
		fail("getdents64 of the removed sub: %ld (%s), want ENOENT (a dead directory)", n,
		     n < 0 ? test_strerror(errno) : "entries");
	if (access(TOP, F_OK) == 0 || access(ONE, F_OK) == 0)
		fail("a removed directory exists again");
	pass();
}
