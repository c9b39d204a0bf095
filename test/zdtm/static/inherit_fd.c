/*
 * inherit_fd - a pipe whose other end is outside the dumped tree, restored
 * with --inherit-fd.
 *
 * The driver starts the program with fd 3 the write end of a pipe whose
 * read end only the driver holds (as a container engine holds the
 * container's stdout). Before "ready" the program writes "before\n" into
 * it, which the driver leaves unread: it is in flight at dump. The driver
 * restores with --inherit-fd fd[N]:pipe:[INO], N the write end of a new
 * pipe.
 *
 * After SIGTERM: fd 3 is a pipe, O_WRONLY, without O_NONBLOCK, and
 * FD_CLOEXEC still set; a sum kept in memory is intact; the program
 * writes "after <sum>\n" into fd 3, which the driver reads from its new
 * pipe (and nothing else: the bytes in flight are not put back into a
 * pipe amber did not make).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define FD 3

static unsigned long sum_to(unsigned long n)
{
	unsigned long s = 0, i;

	for (i = 1; i <= n; i++)
		s += i;
	return s;
}

int main(void)
{
	unsigned long sum = sum_to(1000);
	struct stat st;
	char line[64];
	int fl, n;

	test_init();
	if (fstat(FD, &st) || !S_ISFIFO(st.st_mode))
		fail("fd %d is not the driver's pipe", FD);
	if (fcntl(FD, F_SETFD, FD_CLOEXEC))
		fail("F_SETFD: %s", test_strerror(errno));
	if (write(FD, "before\n", 7) != 7)
		fail("write before: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	if (fstat(FD, &st) || !S_ISFIFO(st.st_mode))
		fail("fd %d is not a pipe after restore (mode %#o)", FD, st.st_mode);
	fl = fcntl(FD, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) != O_WRONLY || (fl & O_NONBLOCK))
		fail("fd %d: F_GETFL %#o, want O_WRONLY", FD, fl);
	if (fcntl(FD, F_GETFD) != FD_CLOEXEC)
		fail("fd %d: FD_CLOEXEC lost", FD);
	if (sum != sum_to(1000))
		fail("sum %lu, want %lu", sum, sum_to(1000));
	n = snprintf(line, sizeof(line), "after %lu\n", sum);
	if (write(FD, line, n) != n)
		fail("write after: %s", test_strerror(errno));
	pass();
}
