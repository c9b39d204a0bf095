/*
 * pipe_reopen00 - each end of a pipe opened twice, as CRIU's pipe01 has
 * it: two open file descriptions of one end, each with its own flags.
 *
 * pipe(r, w); rd = dup(r), wd = dup(w); r2 = open("/proc/self/fd/r",
 * O_RDONLY | O_NONBLOCK), w2 = open("/proc/self/fd/w", O_WRONLY); then
 * O_NONBLOCK is set on w (so on wd too, not on w2).  10,000 patterned
 * bytes are left in the pipe.
 *
 * After SIGTERM: all six fds are the one pipe (same inode); r/rd and w/wd
 * are one description each, r2 and w2 are others (kcmp); F_GETFL of each
 * is as set; the 10,000 bytes come out of r2, then the pipe is empty; a
 * byte written to w2 comes out of rd; closing every write end gives EOF.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

#define LEN 10000
#define SEED 7

static unsigned char buf[LEN + 1];

/* same_file says whether fds a and b share one open file description. */
static int same_file(int a, int b)
{
	long r = syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b);

	if (r < 0)
		fail("kcmp fds %d and %d: %s", a, b, test_strerror(errno));
	return r == 0;
}

static int reopen(int fd, int flags)
{
	char path[64];
	int n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = open(path, flags);
	if (n < 0)
		fail("open %s: %s", path, test_strerror(errno));
	return n;
}

static void expect_flags(int fd, int want, const char *what)
{
	int fl = fcntl(fd, F_GETFL);

	if ((fl & (O_ACCMODE | O_NONBLOCK)) != want)
		fail("%s (fd %d): F_GETFL %#o, want %#o", what, fd, fl & (O_ACCMODE | O_NONBLOCK), want);
}

int main(void)
{
	int p[2], rd, wd, r2, w2, i;
	struct stat st0, st;

	test_init();
	if (pipe(p))
		fail("pipe: %s", test_strerror(errno));
	rd = dup(p[0]);
	wd = dup(p[1]);
	r2 = reopen(p[0], O_RDONLY | O_NONBLOCK);
	w2 = reopen(p[1], O_WRONLY);
	if (rd < 0 || wd < 0)
		fail("dup: %s", test_strerror(errno));
	if (fcntl(p[1], F_SETFL, O_NONBLOCK))
		fail("F_SETFL: %s", test_strerror(errno));
	fill_pattern(buf, LEN, SEED);
	if (write(p[1], buf, LEN) != LEN)
		fail("write %d bytes: %s", LEN, test_strerror(errno));

	test_ready();
	test_wait_stop();

	int fds[] = { p[0], p[1], rd, wd, r2, w2 };
	if (fstat(p[0], &st0))
		fail("fstat: %s", test_strerror(errno));
	for (i = 0; i < 6; i++) {
		if (fstat(fds[i], &st))
			fail("fstat fd %d: %s", fds[i], test_strerror(errno));
		if (!S_ISFIFO(st.st_mode) || st.st_ino != st0.st_ino)
			fail("fd %d: inode %lu, not the pipe %lu", fds[i], (unsigned long)st.st_ino,
			     (unsigned long)st0.st_ino);
	}
	if (!same_file(p[0], rd) || !same_file(p[1], wd))
		fail("a dup'ed end is no longer the same open file");
	if (same_file(p[0], r2) || same_file(p[1], w2) || same_file(r2, w2))
		fail("a reopened end shares its open file with another");
	expect_flags(p[0], O_RDONLY, "read end");
	expect_flags(rd, O_RDONLY, "dup of the read end");
	expect_flags(r2, O_RDONLY | O_NONBLOCK, "reopened read end");
	expect_flags(p[1], O_WRONLY | O_NONBLOCK, "write end");
	expect_flags(wd, O_WRONLY | O_NONBLOCK, "dup of the write end");
	expect_flags(w2, O_WRONLY, "reopened write end");

	size_t got = 0;
	while (got < LEN) {
		ssize_t n = read(r2, buf + got, LEN + 1 - got);
		if (n <= 0)
			fail("read after %zu of %d bytes: %zd (%s)", got, LEN, n, n < 0 ? test_strerror(errno) : "EOF");
		got += n;
	}
	expect_pattern(buf, LEN, SEED, "data in flight");
	if (read(r2, buf, 1) != -1 || errno != EAGAIN)
		fail("pipe not empty after the data in flight");
	if (write(w2, "x", 1) != 1 || read(rd, buf, 2) != 1 || buf[0] != 'x')
		fail("a byte written to the reopened write end does not come out");
	close(p[1]);
	close(wd);
	close(w2);
	if (read(r2, buf, 1) != 0)
		fail("no EOF once every write end is closed");
	pass();
}
