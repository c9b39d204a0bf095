/*
 * ns_files - open namespace files (/proc/PID/ns/NAME, nsfs) keep pointing
 * to the right namespaces across C/R (CRIU's proc-self).
 *
 * The test opens its own net, uts and ipc namespaces (/proc/self/ns/...,
 * one of them twice: two open files) and its parent's network namespace
 * (/proc/PPID/ns/net: the namespace of whoever started it, where amber
 * runs).  Run in namespaces of its own, the first are the tree's and the
 * last the dumper's; run in the test's, all are the dumper's.
 *
 * After restore: each own-namespace descriptor is the namespace the
 * process is in now (same inode as /proc/self/ns/NAME; a restore in new
 * namespaces gives new inodes); the parent's is the same namespace as
 * before (same inode: it outlives the dump); each /proc/self/fd link
 * reads "NAME:[INODE]"; the open flags are O_RDONLY; setns to the uts
 * descriptor works.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

static const char *names[] = { "net", "uts", "ipc", "net" };
#define OWN 4

static ino_t ino_of(const char *path)
{
	struct stat st;
	if (stat(path, &st))
		fail("stat %s: %s", path, test_strerror(errno));
	return st.st_ino;
}

static void check_fd(int fd, const char *name, ino_t want, const char *what)
{
	struct stat st;
	char link[64], target[64], expect[64];
	if (fstat(fd, &st))
		fail("%s: fstat: %s", what, test_strerror(errno));
	if (st.st_ino != want)
		fail("%s: namespace inode %lu, want %lu", what, (unsigned long)st.st_ino, (unsigned long)want);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = 0;
	snprintf(expect, sizeof(expect), "%s:[%lu]", name, (unsigned long)want);
	if (strcmp(target, expect))
		fail("%s: link \"%s\", want \"%s\"", what, target, expect);
	if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDONLY)
		fail("%s: not O_RDONLY", what);
}

int main(void)
{
	int own[OWN], parent;
	char path[64];
	ino_t parent_ino;

	test_init();
	for (int i = 0; i < OWN; i++) {
		snprintf(path, sizeof(path), "/proc/self/ns/%s", names[i]);
		if ((own[i] = open(path, O_RDONLY)) < 0)
			fail("open %s: %s", path, test_strerror(errno));
	}
	snprintf(path, sizeof(path), "/proc/%d/ns/net", getppid());
	if ((parent = open(path, O_RDONLY)) < 0)
		fail("open %s: %s", path, test_strerror(errno));
	parent_ino = ino_of(path);

	test_ready();
	test_wait_stop();

	for (int i = 0; i < OWN; i++) {
		char what[32];
		snprintf(path, sizeof(path), "/proc/self/ns/%s", names[i]);
		snprintf(what, sizeof(what), "own %s (fd %d)", names[i], own[i]);
		check_fd(own[i], names[i], ino_of(path), what);
	}
	check_fd(parent, "net", parent_ino, "parent's net");
	if (setns(own[1], CLONE_NEWUTS))
		fail("setns to the uts descriptor: %s", test_strerror(errno));
	pass();
}
