/*
 * fifo00 - a FIFO (named pipe) with data in flight, both ends in the
 * process.
 *
 * mkfifo("fifo00.fifo") in the cwd; the read end is opened O_RDONLY |
 * O_NONBLOCK (so the open does not wait), the write end O_WRONLY.  The
 * FIFO is grown to 256 KiB (F_SETPIPE_SZ) and 100,000 patterned bytes are
 * written and left unread.
 *
 * After SIGTERM: both fds are FIFOs with the inode of the path, the read
 * end O_RDONLY|O_NONBLOCK, the write end O_WRONLY; the FIFO holds 256 KiB
 * (F_GETPIPE_SZ); exactly the 100,000
 * bytes come out; then the FIFO is empty (EAGAIN) and bytes written to
 * the write end come out of the read end.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define NAME "fifo00.fifo"
#define LEN 100000
#define SEED 42

static unsigned char buf[LEN + 1];

int main(void)
{
	struct stat path_st, rst, wst;
	int r, w;

	test_init();
	unlink(NAME);
	if (mkfifo(NAME, 0600))
		fail("mkfifo: %s", test_strerror(errno));
	r = open(NAME, O_RDONLY | O_NONBLOCK);
	w = open(NAME, O_WRONLY);
	if (r < 0 || w < 0)
		fail("open %s: %s", NAME, test_strerror(errno));
	if (fcntl(w, F_SETPIPE_SZ, 256 << 10) < 0)
		fail("F_SETPIPE_SZ: %s", test_strerror(errno));
	fill_pattern(buf, LEN, SEED);
	if (write(w, buf, LEN) != LEN)
		fail("write %d bytes: %s", LEN, test_strerror(errno));

	test_ready();
	test_wait_stop();

	if (stat(NAME, &path_st) || fstat(r, &rst) || fstat(w, &wst))
		fail("stat: %s", test_strerror(errno));
	if (!S_ISFIFO(rst.st_mode) || !S_ISFIFO(wst.st_mode))
		fail("fds %d/%d are not FIFOs (modes %#o/%#o)", r, w, rst.st_mode, wst.st_mode);
	if (rst.st_ino != path_st.st_ino || wst.st_ino != path_st.st_ino || rst.st_dev != path_st.st_dev)
		fail("fds %d/%d are not the FIFO %s (inodes %lu/%lu, path %lu)", r, w, NAME,
		     (unsigned long)rst.st_ino, (unsigned long)wst.st_ino, (unsigned long)path_st.st_ino);
	int fl = fcntl(r, F_GETFL);
	if ((fl & O_ACCMODE) != O_RDONLY || !(fl & O_NONBLOCK))
		fail("read end: F_GETFL %#o, want O_RDONLY|O_NONBLOCK", fl);
	fl = fcntl(w, F_GETFL);
	if ((fl & O_ACCMODE) != O_WRONLY || (fl & O_NONBLOCK))
		fail("write end: F_GETFL %#o, want O_WRONLY", fl);

	if (fcntl(w, F_GETPIPE_SZ) != 256 << 10)
		fail("FIFO capacity %d, want %d", fcntl(w, F_GETPIPE_SZ), 256 << 10);

	size_t got = 0;
	while (got < LEN) {
		ssize_t n = read(r, buf + got, LEN + 1 - got);
		if (n <= 0)
			fail("read after %zu of %d bytes: %zd (%s)", got, LEN, n, n < 0 ? test_strerror(errno) : "EOF");
		got += n;
	}
	if (got != LEN)
		fail("read %zu bytes, %d were in flight", got, LEN);
	expect_pattern(buf, LEN, SEED, "data in flight");
	if (read(r, buf, 1) != -1 || errno != EAGAIN)
		fail("the FIFO should be empty now: %s", test_strerror(errno));
	if (write(w, "abc", 3) != 3 || read(r, buf, 10) != 3)
		fail("write and read after restore: %s", test_strerror(errno));
	pass();
}
