/*
 * files_many - thousands of open regular files, with holes in the
 * descriptor table, keep their numbers, files and offsets.
 *
 * Checks:
 *  - NFILES files (files_many.d/N, each of its own size) are open, every
 *    one at its own offset, O_RDWR or O_RDONLY by turns;
 *  - every seventh descriptor was closed again before the checkpoint, so
 *    the table has holes a restore must keep: after restore those numbers
 *    are still free and every other descriptor refers to its file (same
 *    inode), with its offset and access mode.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define NFILES	3000
#define DIR	"files_many.d"

static int fds[NFILES];
static ino_t inodes[NFILES];

static int closed(int i) { return i % 7 == 3; }
static off_t offset_of(int i) { return (i * 37) % 4001; }

int main(void)
{
	char path[64], buf[4096];
	struct stat st;
	int i;

	test_init();
	if (mkdir(DIR, 0755) && errno != EEXIST)
		fail("mkdir %s: %s", DIR, test_strerror(errno));
	memset(buf, 'f', sizeof(buf));
	for (i = 0; i < NFILES; i++) {
		int flags = i % 2 ? O_RDONLY : O_RDWR;

		snprintf(path, sizeof(path), DIR "/%d", i);
		fds[i] = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (fds[i] < 0)
			fail("create %s: %s", path, test_strerror(errno));
		if (write(fds[i], buf, 4001) != 4001)
			fail("write %s: %s", path, test_strerror(errno));
		if (flags != O_RDWR) {
			close(fds[i]);
			fds[i] = open(path, flags);
			if (fds[i] < 0)
				fail("open %s: %s", path, test_strerror(errno));
		}
		if (lseek(fds[i], offset_of(i), SEEK_SET) != offset_of(i))
			fail("lseek %s: %s", path, test_strerror(errno));
		if (fstat(fds[i], &st))
			fail("fstat %s: %s", path, test_strerror(errno));
		inodes[i] = st.st_ino;
	}
	for (i = 0; i < NFILES; i++)
		if (closed(i) && close(fds[i]))
			fail("close fd %d: %s", fds[i], test_strerror(errno));

	test_ready();
	test_wait_stop();

	for (i = 0; i < NFILES; i++) {
		int fl = fcntl(fds[i], F_GETFL);
		off_t off;

		if (closed(i)) {
			if (fl >= 0)
				fail("fd %d was closed before the checkpoint but is open after it",
				     fds[i]);
			continue;
		}
		if (fl < 0)
			fail("fd %d (%s/%d) is not open: %s", fds[i], DIR, i,
			     test_strerror(errno));
		if (fstat(fds[i], &st) || st.st_ino != inodes[i])
			fail("fd %d refers to inode %lu, expected %lu (%s/%d)", fds[i],
			     (unsigned long)st.st_ino, (unsigned long)inodes[i], DIR, i);
		if ((fl & O_ACCMODE) != (i % 2 ? O_RDONLY : O_RDWR))
			fail("fd %d (%s/%d): access mode %#o", fds[i], DIR, i,
			     fl & O_ACCMODE);
		off = lseek(fds[i], 0, SEEK_CUR);
		if (off != offset_of(i))
			fail("fd %d (%s/%d): offset %lld, expected %lld", fds[i], DIR,
			     i, (long long)off, (long long)offset_of(i));
	}
	pass();
}
