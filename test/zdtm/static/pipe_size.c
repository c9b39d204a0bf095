/*
 * pipe_size - the capacity of pipes survives a checkpoint (CRIU's pipe03).
 *
 * Three pipes: grown to 1 MiB and holding 200 KiB, grown to 1 MiB and
 * empty, shrunk to one page and empty.  After SIGTERM F_GETPIPE_SZ must
 * say the same and the data must be there.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zdtm.h"

#define DATA (200 << 10)

static const int sizes[3] = { 1 << 20, 1 << 20, 4096 };

int main(void)
{
	static char buf[DATA];
	int p[3][2], i, n;

	test_init();
	for (i = 0; i < 3; i++) {
		if (pipe2(p[i], O_NONBLOCK))
			fail("pipe2: %s", strerror(errno));
		if (fcntl(p[i][1], F_SETPIPE_SZ, sizes[i]) != sizes[i])
			fail("F_SETPIPE_SZ %d: %s", sizes[i], strerror(errno));
	}
	fill_pattern(buf, DATA, 3);
	if (write(p[0][1], buf, DATA) != DATA)
		fail("write: %s", strerror(errno));
	test_ready();
	test_wait_stop();
	for (i = 0; i < 3; i++) {
		n = fcntl(p[i][0], F_GETPIPE_SZ);
		if (n != sizes[i])
			fail("pipe %d: F_GETPIPE_SZ %d after restore, want %d", i, n, sizes[i]);
	}
	memset(buf, 0, DATA);
	if (read(p[0][0], buf, DATA) != DATA)
		fail("read: %s", strerror(errno));
	expect_pattern(buf, DATA, 3, "pipe data");
	pass();
}
