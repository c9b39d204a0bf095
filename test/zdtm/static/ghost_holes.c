/*
 * ghost_holes - an unlinked 8 MiB file with holes punched into it keeps
 * its data and its holes (CRIU's ghost_multi_hole00/01, dumped with
 * --ghost-limit 16M and --ghost-fiemap or --no-ghost-fiemap).
 *
 * Every 8 KiB of the file starts with a page of pattern; the page after
 * it is punched out (FALLOC_FL_PUNCH_HOLE), the last page of the file
 * too. The file is unlinked and kept open. After SIGTERM: the same size,
 * the pattern in every data page, zeroes in every hole, and SEEK_HOLE from
 * each data page finds the hole right after it: the restored file is as
 * sparse as the dumped one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define PAGE 4096
#define STEP (2 * PAGE)
#define FILE_SIZE (8 << 20)
#define SEED 77

static char buf[PAGE], zero[PAGE];

int main(void)
{
	struct stat st;
	off_t off;
	int fd;

	test_init();
	fd = open("ghost_holes.data", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		fail("open: %s", strerror(errno));
	if (ftruncate(fd, FILE_SIZE))
		fail("ftruncate: %s", strerror(errno));
	for (off = 0; off < FILE_SIZE; off += STEP) {
		fill_pattern(buf, PAGE, SEED + off / STEP);
		if (pwrite(fd, buf, PAGE, off) != PAGE || pwrite(fd, buf, PAGE, off + PAGE) != PAGE)
			fail("pwrite at %lld: %s", (long long)off, strerror(errno));
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off + PAGE, PAGE))
			fail("punch a hole at %lld: %s", (long long)(off + PAGE), strerror(errno));
	}
	if (lseek(fd, 0, SEEK_HOLE) != PAGE)
		fail("the file system keeps no holes (SEEK_HOLE from 0 gives %lld)", (long long)lseek(fd, 0, SEEK_HOLE));
	if (unlink("ghost_holes.data"))
		fail("unlink: %s", strerror(errno));
	test_ready();
	test_wait_stop();
	if (fstat(fd, &st))
		fail("fstat: %s", strerror(errno));
	if (st.st_size != FILE_SIZE)
		fail("size %lld, want %d", (long long)st.st_size, FILE_SIZE);
	if (st.st_nlink != 0)
		fail("%ld links, want an unlinked file", (long)st.st_nlink);
	for (off = 0; off < FILE_SIZE; off += STEP) {
		if (pread(fd, buf, PAGE, off) != PAGE)
			fail("pread at %lld: %s", (long long)off, strerror(errno));
		if (pattern_mismatch(buf, PAGE, SEED + off / STEP) >= 0)
			fail("data page at %lld differs", (long long)off);
		if (pread(fd, buf, PAGE, off + PAGE) != PAGE || memcmp(buf, zero, PAGE))
			fail("hole at %lld does not read zeroes", (long long)(off + PAGE));
		if (lseek(fd, off, SEEK_HOLE) != off + PAGE)
			fail("no hole right after the data page at %lld (SEEK_HOLE gives %lld)", (long long)off,
			     (long long)lseek(fd, off, SEEK_HOLE));
	}
	pass();
}
