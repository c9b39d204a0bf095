/*
 * fd_set - the set of open file descriptors is restored exactly.
 *
 * The test holds fds 0, 1, 2 (from the driver), /dev/null on fd 5 (with
 * FD_CLOEXEC) and a regular file on fd 7 (offset 100), both opened
 * elsewhere and moved there with dup2().  It records every entry of
 * /proc/self/fd with its link target, fd flags and file status flags before
 * "ready"; after SIGTERM the list must be identical: no fd leaked in by the
 * tool, none missing, same targets and flags, and fd 7 at offset 100.
 * (Extra fds inherited from the driver, if any, are part of the list too.)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zdtm.h"

#define DATA_FILE "fd_set.data"
#define MAXFDS 64

struct fdinfo {
	int fd, fdflags, flflags;
	char target[PATH_MAX];
};

static int by_fd(const void *a, const void *b)
{
	return ((const struct fdinfo *)a)->fd - ((const struct fdinfo *)b)->fd;
}

/* All open fds (except the one used to read the directory), sorted. */
static int list_fds(struct fdinfo *out)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		fail("opendir /proc/self/fd: %s", test_strerror(errno));
	while ((e = readdir(d))) {
		char link[64];
		ssize_t len;
		int fd;

		if (e->d_name[0] == '.')
			continue;
		fd = atoi(e->d_name);
		if (fd == dirfd(d))
			continue;
		if (n == MAXFDS)
			fail("more than %d open fds", MAXFDS);
		out[n].fd = fd;
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		len = readlink(link, out[n].target, sizeof(out[n].target) - 1);
		if (len < 0)
			fail("readlink %s: %s", link, test_strerror(errno));
		out[n].target[len] = '\0';
		out[n].fdflags = fcntl(fd, F_GETFD);
		out[n].flflags = fcntl(fd, F_GETFL);
		n++;
	}
	closedir(d);
	qsort(out, n, sizeof(*out), by_fd);
	return n;
}

static void move_fd(int fd, int to)
{
	if (fd < 0)
		fail("open: %s", test_strerror(errno));
	if (dup2(fd, to) != to)
		fail("dup2(%d, %d): %s", fd, to, test_strerror(errno));
	close(fd);
}

int main(void)
{
	static struct fdinfo before[MAXFDS], after[MAXFDS];
	static const int expect_fds[] = { 0, 1, 2, 5, 7 };
	char data[100];
	int nb, na, i;
	off_t off;

	test_init();

	move_fd(open("/dev/null", O_RDONLY), 5);
	if (fcntl(5, F_SETFD, FD_CLOEXEC))
		fail("F_SETFD on fd 5: %s", test_strerror(errno));
	move_fd(open(DATA_FILE, O_RDWR | O_CREAT | O_TRUNC, 0644), 7);
	fill_pattern(data, sizeof(data), 7);
	if (write(7, data, sizeof(data)) != sizeof(data))
		fail("write to fd 7: %s", test_strerror(errno));

	/* Sanity: our fds are there.  Anything else inherited from the
	 * driver is tolerated, but must be restored just the same. */
	nb = list_fds(before);
	for (i = 0; i < 5; i++) {
		int j;

		for (j = 0; j < nb && before[j].fd != expect_fds[i]; j++)
			;
		if (j == nb)
			fail("test setup: fd %d is not open", expect_fds[i]);
	}

	test_ready();
	test_wait_stop();

	na = list_fds(after);
	for (i = 0; i < nb && i < na; i++) {
		if (after[i].fd != before[i].fd)
			fail("fd %d is open after restore but was not before "
			     "(or fd %d is missing); target %s",
			     after[i].fd < before[i].fd ? after[i].fd : before[i].fd,
			     after[i].fd < before[i].fd ? before[i].fd : after[i].fd,
			     after[i].fd < before[i].fd ? after[i].target
							: before[i].target);
		if (strcmp(after[i].target, before[i].target))
			fail("fd %d points to \"%s\", expected \"%s\"", after[i].fd,
			     after[i].target, before[i].target);
		if (after[i].fdflags != before[i].fdflags)
			fail("fd %d: F_GETFD is %#x, expected %#x (FD_CLOEXEC=%#x)",
			     after[i].fd, after[i].fdflags, before[i].fdflags,
			     FD_CLOEXEC);
		if (after[i].flflags != before[i].flflags)
			fail("fd %d: F_GETFL is %#o, expected %#o", after[i].fd,
			     after[i].flflags, before[i].flflags);
	}
	if (na > nb)
		fail("extra fd %d -> %s after restore", after[nb].fd,
		     after[nb].target);
	if (na < nb)
		fail("fd %d -> %s is missing after restore", before[na].fd,
		     before[na].target);

	off = lseek(7, 0, SEEK_CUR);
	if (off != sizeof(data))
		fail("fd 7 offset is %lld, expected %zu", (long long)off,
		     sizeof(data));
	pass();
}
