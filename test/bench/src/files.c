/*
 * files - many open regular files.
 *
 * Usage: files N.  N files of 4001 bytes (files.d/0 ... files.d/N-1, in the
 * current directory) are created and left open read-write, file i at
 * offset (i * 37) % 4001.  After SIGTERM: every descriptor is still open
 * on its file (same inode) at its offset.  The soft RLIMIT_NOFILE is
 * raised to the hard one if N files need it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

#define DIR	"files.d"
#define SIZE	4001

static off_t offset_of(unsigned long i) { return (off_t)(i * 37 % SIZE); }

static void raise_nofile(unsigned long n)
{
	struct rlimit r;

	if (getrlimit(RLIMIT_NOFILE, &r))
		fail("getrlimit: %s", strerror(errno));
	if (r.rlim_cur >= n + 64)
		return;
	if (r.rlim_max < n + 64)
		fail("%lu files need RLIMIT_NOFILE %lu, the hard limit is %lu", n,
		     n + 64, (unsigned long)r.rlim_max);
	r.rlim_cur = r.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &r))
		fail("setrlimit: %s", strerror(errno));
}

int main(int argc, char **argv)
{
	static char data[SIZE];
	unsigned long n, i;
	int *fds;
	ino_t *inodes;
	struct stat st;
	char path[64];

	bench_init();
	if (argc != 2)
		fail("usage: files N");
	n = arg_ulong(argv[1], "number of files");
	raise_nofile(n);
	fds = calloc(n, sizeof(*fds));
	inodes = calloc(n, sizeof(*inodes));
	if (!fds || !inodes)
		fail("calloc: %s", strerror(errno));
	if (mkdir(DIR, 0755) && errno != EEXIST)
		fail("mkdir %s: %s", DIR, strerror(errno));
	memset(data, 'f', sizeof(data));
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), DIR "/%lu", i);
		fds[i] = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (fds[i] < 0)
			fail("create %s: %s", path, strerror(errno));
		if (write(fds[i], data, SIZE) != SIZE)
			fail("write %s: %s", path, strerror(errno));
		if (lseek(fds[i], offset_of(i), SEEK_SET) != offset_of(i) ||
		    fstat(fds[i], &st))
			fail("lseek or fstat %s: %s", path, strerror(errno));
		inodes[i] = st.st_ino;
	}

	bench_ready();
	bench_wait_stop();

	for (i = 0; i < n; i++) {
		off_t off = lseek(fds[i], 0, SEEK_CUR);

		if (fstat(fds[i], &st) || st.st_ino != inodes[i])
			fail("fd %d is not open on " DIR "/%lu any more", fds[i], i);
		if (off != offset_of(i))
			fail("fd %d (" DIR "/%lu): offset %lld, expected %lld", fds[i],
			     i, (long long)off, (long long)offset_of(i));
	}
	pass();
}
