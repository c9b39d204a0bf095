/*
 * unlink_tmpfile - files made with O_TMPFILE (glibc's tmpfile() makes its
 * files so): never linked, open read-write, 5000 patterned bytes, at offset
 * 1234.  The kernel keeps O_TMPFILE (which includes O_DIRECTORY) in their
 * open flags, so a restore that reopens them with their flags as they are
 * fails with "not a directory".
 *
 * After SIGTERM: fstat shows a regular file with nlink 0, the size and mode;
 * the offset is 1234 and the bytes there are right; the file is open
 * O_RDWR and takes writes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define SIZE 5000
#define POS 1234

static unsigned char buf[SIZE];

int main(void)
{
	struct stat st;
	int fd;

	test_init();
	fd = open(".", O_RDWR | O_TMPFILE, 0640);
	if (fd < 0)
		fail("open O_TMPFILE: %s", test_strerror(errno));
	fill_pattern(buf, SIZE, 7);
	if (write(fd, buf, SIZE) != SIZE || lseek(fd, POS, SEEK_SET) != POS)
		fail("write: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	if (fstat(fd, &st))
		fail("fstat: %s", test_strerror(errno));
	if (!S_ISREG(st.st_mode) || st.st_nlink != 0 || st.st_size != SIZE || (st.st_mode & 07777) != 0640)
		fail("mode %#o nlink %lu size %ld, want a regular file 0640 nlink 0 size %d", st.st_mode,
		     (unsigned long)st.st_nlink, (long)st.st_size, SIZE);
	if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDWR)
		fail("flags %#o: not O_RDWR", fcntl(fd, F_GETFL));
	if (lseek(fd, 0, SEEK_CUR) != POS)
		fail("offset %ld, want %d", (long)lseek(fd, 0, SEEK_CUR), POS);
	if (read(fd, buf, SIZE - POS) != SIZE - POS)
		fail("read: %s", test_strerror(errno));
	for (int i = 0; i < SIZE - POS; i++)
		if (buf[i] != pattern_byte(POS + i, 7))
			fail("byte %d differs", POS + i);
	if (pwrite(fd, "XY", 2, 0) != 2 || pread(fd, buf, 2, 0) != 2 || memcmp(buf, "XY", 2))
		fail("write and read back: %s", test_strerror(errno));
	pass();
}
