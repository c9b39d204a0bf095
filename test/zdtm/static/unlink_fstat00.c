/*
 * unlink_fstat00 - regular files still open after they were unlinked
 * (CRIU's classic).
 *
 * small: "unlink_fstat00.small", 100 patterned bytes, mode 0640, opened
 * twice (fd a O_RDWR at offset 50, fd b O_RDONLY at offset 10: two open
 * files of one inode).  sparse: "unlink_fstat00.sparse", 200,000 bytes
 * with data only at 0..4095 and 150,000..154,095, opened O_RDWR at offset
 * 150,010.  Both are unlinked before `ready`.
 *
 * After SIGTERM: fstat shows nlink 0, the same size, mode and mtime; the
 * /proc/self/fd links end in " (deleted)"; each fd is at its offset and
 * reads the right bytes there; the hole reads as zeros; a and b are still
 * one inode (a write through a is read through b); the paths do not exist.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define SMALL "unlink_fstat00.small"
#define SPARSE "unlink_fstat00.sparse"
#define SPARSE_SIZE 200000
#define HI 150000

static unsigned char buf[8192];
static struct stat before_small, before_sparse;

static void write_at(int fd, off_t off, size_t len, uint64_t seed)
{
	fill_pattern(buf, len, seed);
	if (pwrite(fd, buf, len, off) != (ssize_t)len)
		fail("pwrite: %s", test_strerror(errno));
}

static void check_stat(int fd, const struct stat *was, const char *what)
{
	struct stat st;
	if (fstat(fd, &st))
		fail("fstat %s: %s", what, test_strerror(errno));
	if (st.st_nlink != 0)
		fail("%s: nlink %lu, want 0 (unlinked)", what, (unsigned long)st.st_nlink);
	if (st.st_size != was->st_size || st.st_mode != was->st_mode)
		fail("%s: size %ld mode %#o, want %ld %#o", what, (long)st.st_size, st.st_mode, (long)was->st_size,
		     was->st_mode);
	if (st.st_mtim.tv_sec != was->st_mtim.tv_sec || st.st_mtim.tv_nsec / 1000 != was->st_mtim.tv_nsec / 1000)
		fail("%s: mtime %ld.%09ld, want %ld.%09ld", what, (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
		     (long)was->st_mtim.tv_sec, was->st_mtim.tv_nsec);
	char link[64], target[4096];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = 0;
	if (n < 10 || strcmp(target + n - 10, " (deleted)"))
		fail("%s: /proc link \"%s\" does not end in \" (deleted)\"", what, target);
}

static void expect_at(int fd, off_t pos, size_t len, uint64_t seed, off_t seed_off, const char *what)
{
	if (lseek(fd, 0, SEEK_CUR) != pos)
		fail("%s: offset %ld, want %ld", what, (long)lseek(fd, 0, SEEK_CUR), (long)pos);
	if (read(fd, buf, len) != (ssize_t)len)
		fail("%s: read %zu bytes: %s", what, len, test_strerror(errno));
	for (size_t i = 0; i < len; i++)
		if (buf[i] != pattern_byte(pos - seed_off + i, seed))
			fail("%s: byte %ld differs", what, (long)(pos + i));
}

int main(void)
{
	int a, b, s;

	test_init();
	a = open(SMALL, O_RDWR | O_CREAT | O_TRUNC, 0640);
	s = open(SPARSE, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (a < 0 || s < 0 || fchmod(a, 0640))
		fail("create: %s", test_strerror(errno));
	write_at(a, 0, 100, 1);
	b = open(SMALL, O_RDONLY);
	if (b < 0)
		fail("open %s again: %s", SMALL, test_strerror(errno));
	write_at(s, 0, 4096, 2);
	write_at(s, HI, 4096, 3);
	if (ftruncate(s, SPARSE_SIZE))
		fail("ftruncate: %s", test_strerror(errno));
	if (lseek(a, 50, SEEK_SET) != 50 || lseek(b, 10, SEEK_SET) != 10 || lseek(s, HI + 10, SEEK_SET) != HI + 10)
		fail("lseek: %s", test_strerror(errno));
	if (unlink(SMALL) || unlink(SPARSE))
		fail("unlink: %s", test_strerror(errno));
	if (fstat(a, &before_small) || fstat(s, &before_sparse))
		fail("fstat: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	check_stat(a, &before_small, "small file (fd a)");
	check_stat(b, &before_small, "small file (fd b)");
	check_stat(s, &before_sparse, "sparse file");
	struct stat sa, sb;
	if (fstat(a, &sa) || fstat(b, &sb) || sa.st_ino != sb.st_ino || sa.st_dev != sb.st_dev)
		fail("fds a and b are no longer one file");
	expect_at(a, 50, 50, 1, 0, "small file through fd a");
	expect_at(b, 10, 20, 1, 0, "small file through fd b");
	expect_at(s, HI + 10, 4086, 3, HI, "sparse file");
	if (pread(s, buf, 4096, 0) != 4096)
		fail("pread sparse: %s", test_strerror(errno));
	expect_pattern(buf, 4096, 2, "sparse file's first block");
	if (pread(s, buf, 8192, 50000) != 8192)
		fail("pread hole: %s", test_strerror(errno));
	expect_zero(buf, 8192, "sparse file's hole");
	if (pwrite(a, "XY", 2, 0) != 2 || pread(b, buf, 2, 0) != 2 || memcmp(buf, "XY", 2))
		fail("a write through fd a is not seen through fd b");
	if (access(SMALL, F_OK) == 0 || access(SPARSE, F_OK) == 0)
		fail("an unlinked path exists again");
	pass();
}
