/*
 * ghost_fifo - an unlinked FIFO (CRIU's fifo-ghost, unlink_fifo*).
 *
 * "ghost_fifo.fifo" (mode 0640) is opened three times, O_RDWR, O_RDONLY
 * (non-blocking) and O_WRONLY, holds 1000 patterned bytes, and is unlinked.
 *
 * After SIGTERM: the three fds are one FIFO (same inode) with nlink 0 and
 * mode 0640, with their access modes; the 1000 bytes read back through the
 * O_RDONLY fd, nothing more; a write through the O_RDWR fd is read through
 * the O_RDONLY one; the path stays gone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define FIFO "ghost_fifo.fifo"
#define LEN 1000

static unsigned char buf[LEN + 1];

static void check(int fd, int acc, ino_t ino, const char *what)
{
	struct stat st;

	if (fstat(fd, &st))
		fail("fstat %s: %s", what, test_strerror(errno));
	if (!S_ISFIFO(st.st_mode) || st.st_nlink != 0 || (st.st_mode & 07777) != 0640 || (ino && st.st_ino != ino))
		fail("%s: mode %#o nlink %lu ino %lu, want a FIFO 0640, nlink 0, the others' inode", what, st.st_mode,
		     (unsigned long)st.st_nlink, (unsigned long)st.st_ino);
	if ((fcntl(fd, F_GETFL) & O_ACCMODE) != acc)
		fail("%s: flags %#o, want access mode %#o", what, fcntl(fd, F_GETFL), acc);
}

int main(void)
{
	struct stat st;

	test_init();
	if (mknod(FIFO, S_IFIFO | 0640, 0) || chmod(FIFO, 0640))
		fail("mknod: %s", test_strerror(errno));
	int rw = open(FIFO, O_RDWR);
	int ro = open(FIFO, O_RDONLY | O_NONBLOCK);
	int wo = open(FIFO, O_WRONLY);
	if (rw < 0 || ro < 0 || wo < 0)
		fail("open: %s", test_strerror(errno));
	fill_pattern(buf, LEN, 11);
	if (write(wo, buf, LEN) != LEN || unlink(FIFO))
		fail("write, unlink: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	if (fstat(rw, &st))
		fail("fstat: %s", test_strerror(errno));
	check(rw, O_RDWR, 0, "the O_RDWR fd");
	check(ro, O_RDONLY, st.st_ino, "the O_RDONLY fd");
	check(wo, O_WRONLY, st.st_ino, "the O_WRONLY fd");
	if (read(ro, buf, LEN + 1) != LEN)
		fail("read the FIFO's bytes: %s", test_strerror(errno));
	expect_pattern(buf, LEN, 11, "the FIFO's bytes");
	if (write(rw, "xy", 2) != 2 || read(ro, buf, 3) != 2 || memcmp(buf, "xy", 2))
		fail("a write through the O_RDWR fd is not read through the O_RDONLY one");
	if (access(FIFO, F_OK) == 0)
		fail("%s exists again", FIFO);
	pass();
}
