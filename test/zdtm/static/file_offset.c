/*
 * file_offset - open regular files keep their fd number, offset and flags.
 *
 * Checks:
 *  - an O_RDWR fd on a 64 KiB file that has been read up to offset 12345:
 *    after restore lseek(fd, 0, SEEK_CUR) is still 12345 and the next
 *    read() returns the file bytes that follow;
 *  - an O_WRONLY|O_APPEND fd on a second file, whose offset was moved back
 *    to 0: after restore F_GETFL still has O_APPEND and O_WRONLY, and a
 *    write() lands at the end of the file, not at the saved offset;
 *  - both fds have the same numbers and refer to the same files (inode,
 *    /proc/self/fd link) as before.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define DATA_FILE	"file_offset.data"
#define APPEND_FILE	"file_offset.append"
#define DATA_SIZE	(64 * 1024)
#define DATA_OFFSET	12345
#define DATA_SEED	0x0ff5e7
#define APPEND_LEN	1000
#define APPEND_SEED	0xa99e9d

static unsigned char data[DATA_SIZE];

static void write_all(int fd, const void *buf, size_t len, const char *what)
{
	ssize_t n = write(fd, buf, len);

	if (n != (ssize_t)len)
		fail("write %zu bytes to %s: returned %zd (%s)", len, what, n,
		     n < 0 ? test_strerror(errno) : "short write");
}

/* Check fd still refers to the file at path (same inode), by fstat and
 * by the /proc/self/fd symlink. */
static void check_same_file(int fd, const char *path, const struct stat *before)
{
	char link[64], target[PATH_MAX];
	struct stat st;
	ssize_t n;

	if (fstat(fd, &st))
		fail("fd %d (%s) is no longer open: fstat: %s", fd, path,
		     test_strerror(errno));
	if (st.st_dev != before->st_dev || st.st_ino != before->st_ino)
		fail("fd %d refers to dev %#lx inode %lu, expected %s (dev %#lx inode %lu)",
		     fd, (unsigned long)st.st_dev, (unsigned long)st.st_ino, path,
		     (unsigned long)before->st_dev, (unsigned long)before->st_ino);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		fail("readlink %s: %s", link, test_strerror(errno));
	target[n] = '\0';
	n = strlen(target) - strlen(path);
	if (n < 1 || target[n - 1] != '/' || strcmp(target + n, path))
		fail("%s points to \"%s\", expected a path ending in /%s", link,
		     target, path);
}

int main(void)
{
	unsigned char buf[DATA_SIZE], appended[APPEND_LEN];
	struct stat data_st, append_st, st;
	int fd, afd, flags;
	off_t off;
	ssize_t n;

	test_init();

	/* 64 KiB of known bytes, opened O_RDWR and read up to DATA_OFFSET
	 * in a few uneven chunks. */
	fill_pattern(data, sizeof(data), DATA_SEED);
	fd = open(DATA_FILE, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		fail("create %s: %s", DATA_FILE, test_strerror(errno));
	write_all(fd, data, sizeof(data), DATA_FILE);
	if (lseek(fd, 0, SEEK_SET) != 0)
		fail("lseek %s: %s", DATA_FILE, test_strerror(errno));
	if (read(fd, buf, 1000) != 1000 || read(fd, buf + 1000, 10000) != 10000 ||
	    read(fd, buf + 11000, DATA_OFFSET - 11000) != DATA_OFFSET - 11000)
		fail("reading %s up to offset %d failed", DATA_FILE, DATA_OFFSET);
	if (memcmp(buf, data, DATA_OFFSET))
		fail("%s: data read back before checkpoint is wrong", DATA_FILE);

	/* Second file: some data, then an O_APPEND fd whose file offset is
	 * deliberately not at the end. */
	fill_pattern(appended, sizeof(appended), APPEND_SEED);
	afd = open(APPEND_FILE, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (afd < 0)
		fail("create %s: %s", APPEND_FILE, test_strerror(errno));
	write_all(afd, appended, sizeof(appended), APPEND_FILE);
	close(afd);
	afd = open(APPEND_FILE, O_WRONLY | O_APPEND);
	if (afd < 0)
		fail("open %s O_APPEND: %s", APPEND_FILE, test_strerror(errno));
	if (lseek(afd, 0, SEEK_SET) != 0)
		fail("lseek %s: %s", APPEND_FILE, test_strerror(errno));

	if (fstat(fd, &data_st) || fstat(afd, &append_st))
		fail("fstat: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	/* The data fd: same number, same file, same offset, same contents. */
	check_same_file(fd, DATA_FILE, &data_st);
	flags = fcntl(fd, F_GETFL);
	if ((flags & O_ACCMODE) != O_RDWR || (flags & O_APPEND))
		fail("fd %d (%s): F_GETFL is %#o, expected O_RDWR without O_APPEND",
		     fd, DATA_FILE, flags);
	off = lseek(fd, 0, SEEK_CUR);
	if (off != DATA_OFFSET)
		fail("fd %d (%s): offset is %lld, expected %d", fd, DATA_FILE,
		     (long long)off, DATA_OFFSET);
	n = read(fd, buf, 4096);
	if (n != 4096)
		fail("fd %d (%s): read 4096 bytes at offset %d returned %zd", fd,
		     DATA_FILE, DATA_OFFSET, n);
	if (memcmp(buf, data + DATA_OFFSET, 4096))
		fail("fd %d (%s): bytes read at offset %d are not the file's bytes "
		     "at that offset", fd, DATA_FILE, DATA_OFFSET);
	if (lseek(fd, 0, SEEK_CUR) != DATA_OFFSET + 4096)
		fail("fd %d (%s): offset did not advance to %d after read", fd,
		     DATA_FILE, DATA_OFFSET + 4096);

	/* The append fd: same number, same file, O_APPEND kept. */
	check_same_file(afd, APPEND_FILE, &append_st);
	flags = fcntl(afd, F_GETFL);
	if ((flags & O_ACCMODE) != O_WRONLY || !(flags & O_APPEND))
		fail("fd %d (%s): F_GETFL is %#o, expected O_WRONLY|O_APPEND (%#o)",
		     afd, APPEND_FILE, flags, O_WRONLY | O_APPEND);
	write_all(afd, "tail", 4, APPEND_FILE);
	if (fstat(afd, &st))
		fail("fstat %s: %s", APPEND_FILE, test_strerror(errno));
	if (st.st_size != APPEND_LEN + 4)
		fail("%s is %lld bytes after appending 4 to %d: write did not land "
		     "at the end (O_APPEND lost?)", APPEND_FILE,
		     (long long)st.st_size, APPEND_LEN);
	{
		int rfd = open(APPEND_FILE, O_RDONLY);
		char tail[APPEND_LEN + 4];

		if (rfd < 0 || read(rfd, tail, sizeof(tail)) != sizeof(tail))
			fail("reading back %s failed", APPEND_FILE);
		if (memcmp(tail, appended, APPEND_LEN) ||
		    memcmp(tail + APPEND_LEN, "tail", 4))
			fail("%s: contents wrong after append: the original %d "
			     "bytes must be intact and followed by \"tail\"",
			     APPEND_FILE, APPEND_LEN);
		close(rfd);
	}
	pass();
}
