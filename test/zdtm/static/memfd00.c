/*
 * memfd00 - an open memfd: name, contents, size, seals, position, and two
 * open files of it.
 *
 * memfd_create("amber-memfd00", MFD_ALLOW_SEALING) on fd A; 10000 bytes
 * of pattern written, the size set to 12345 (a partial last page and a
 * hole), position 777, seals F_SEAL_GROW|F_SEAL_SHRINK.  fd B is A
 * reopened read-only through /proc/self/fd (a second open file of the
 * same memfd), at position 5; fd C is a dup of A.
 *
 * After SIGTERM: /proc/self/fd/A and B read "/memfd:amber-memfd00
 * (deleted)"; A, B and C are one inode of size 12345; A and C share their
 * position (777), B has its own (5) and is read-only; the contents (the
 * pattern, then zeroes); F_GET_SEALS is GROW|SHRINK, so ftruncate fails
 * with EPERM while a write inside the file works and shows through B.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define NAME	"amber-memfd00"
#define DATA	10000
#define SIZE	12345
#define SEED	0x3e3fd00ULL
#define SEALS	(F_SEAL_GROW | F_SEAL_SHRINK)

static int fa, fb, fc;

static void check_link(int fd)
{
	char path[64], link[256];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		fail("readlink %s: %s", path, test_strerror(errno));
	link[n] = 0;
	if (strcmp(link, "/memfd:" NAME " (deleted)"))
		fail("fd %d is \"%s\", expected \"/memfd:" NAME " (deleted)\"", fd, link);
}

static void check_contents(void)
{
	static unsigned char buf[SIZE + 1];
	ssize_t n;

	n = pread(fb, buf, sizeof(buf), 0);
	if (n != SIZE)
		fail("pread: %zd bytes (%s), expected %d", n, test_strerror(errno), SIZE);
	expect_pattern(buf, DATA, SEED, "memfd data");
	expect_zero(buf + DATA, SIZE - DATA, "memfd past the data");
}

int main(void)
{
	struct stat sa, sb, sc;
	char path[64];
	unsigned char b = 0x5a, got;
	static unsigned char buf[DATA];
	int seals, fl;

	test_init();
	fa = memfd_create(NAME, MFD_ALLOW_SEALING);
	if (fa < 0)
		fail("memfd_create: %s", test_strerror(errno));
	fill_pattern(buf, DATA, SEED);
	if (write(fa, buf, DATA) != DATA || ftruncate(fa, SIZE))
		fail("fill memfd: %s", test_strerror(errno));
	if (fcntl(fa, F_ADD_SEALS, SEALS))
		fail("F_ADD_SEALS: %s", test_strerror(errno));
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fa);
	fb = open(path, O_RDONLY);
	fc = dup(fa);
	if (fb < 0 || fc < 0)
		fail("reopen or dup: %s", test_strerror(errno));
	if (lseek(fa, 777, SEEK_SET) != 777 || lseek(fb, 5, SEEK_SET) != 5)
		fail("lseek: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	check_link(fa);
	check_link(fb);
	if (fstat(fa, &sa) || fstat(fb, &sb) || fstat(fc, &sc))
		fail("fstat: %s", test_strerror(errno));
	if (sa.st_ino != sb.st_ino || sa.st_ino != sc.st_ino || sa.st_dev != sb.st_dev)
		fail("fds %d, %d, %d are inodes %lu, %lu, %lu: not one memfd", fa, fb, fc,
		     (unsigned long)sa.st_ino, (unsigned long)sb.st_ino, (unsigned long)sc.st_ino);
	if (sa.st_size != SIZE)
		fail("size %lld, expected %d", (long long)sa.st_size, SIZE);
	if (lseek(fa, 0, SEEK_CUR) != 777 || lseek(fb, 0, SEEK_CUR) != 5)
		fail("positions %lld and %lld, expected 777 and 5",
		     (long long)lseek(fa, 0, SEEK_CUR), (long long)lseek(fb, 0, SEEK_CUR));
	if (lseek(fc, 100, SEEK_SET) != 100 || lseek(fa, 0, SEEK_CUR) != 100)
		fail("fds %d and %d (dup) no longer share their position", fa, fc);
	fl = fcntl(fb, F_GETFL);
	if ((fl & O_ACCMODE) != O_RDONLY || (fcntl(fa, F_GETFL) & O_ACCMODE) != O_RDWR)
		fail("access modes %#x and %#x, expected O_RDWR and O_RDONLY",
		     fcntl(fa, F_GETFL) & O_ACCMODE, fl & O_ACCMODE);
	check_contents();
	seals = fcntl(fa, F_GET_SEALS);
	if (seals != SEALS)
		fail("seals %#x, expected %#x", seals, SEALS);
	if (ftruncate(fa, SIZE + 1) == 0 || errno != EPERM)
		fail("ftruncate of a F_SEAL_GROW memfd: %s, expected EPERM",
		     test_strerror(errno));
	if (pwrite(fa, &b, 1, 11000) != 1)
		fail("pwrite: %s", test_strerror(errno));
	if (pread(fb, &got, 1, 11000) != 1 || got != b)
		fail("a write to fd %d does not show through fd %d", fa, fb);
	pass();
}
