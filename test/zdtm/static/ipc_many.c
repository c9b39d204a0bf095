/*
 * ipc_many - hundreds of pipes and unix socket pairs, each with data in
 * flight, come back connected to the right partner.
 *
 * Checks:
 *  - NPIPES pipes, pipe i holding the message "pipe i" in its buffer:
 *    after restore the read end of pipe i reads exactly that message, and
 *    a byte written into its write end comes out of its read end;
 *  - NPAIRS stream socketpairs, each end having sent "pair i end e" to the
 *    other: after restore each end receives its partner's message, and a
 *    byte sent from one end arrives at the other.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtm.h"

#define NPIPES	500
#define NPAIRS	500

static int pipes[NPIPES][2];
static int pairs[NPAIRS][2];

static void expect_read(int fd, const char *want, const char *what)
{
	char buf[64];
	ssize_t n = read(fd, buf, sizeof(buf));

	if (n != (ssize_t)strlen(want) || memcmp(buf, want, n))
		fail("%s (fd %d): read %zd bytes \"%.*s\", expected \"%s\"", what, fd,
		     n, n > 0 ? (int)n : 0, buf, want);
}

static void expect_through(int in, int out, const char *what)
{
	char c = 'z';

	if (write(in, &c, 1) != 1)
		fail("%s: write fd %d: %s", what, in, test_strerror(errno));
	c = 0;
	if (read(out, &c, 1) != 1 || c != 'z')
		fail("%s: a byte written to fd %d did not come out of fd %d", what,
		     in, out);
}

int main(void)
{
	char msg[64], what[64];
	int i, e;

	test_init();
	for (i = 0; i < NPIPES; i++) {
		if (pipe2(pipes[i], O_NONBLOCK))
			fail("pipe %d: %s", i, test_strerror(errno));
		snprintf(msg, sizeof(msg), "pipe %d", i);
		if (write(pipes[i][1], msg, strlen(msg)) != (ssize_t)strlen(msg))
			fail("write pipe %d: %s", i, test_strerror(errno));
	}
	for (i = 0; i < NPAIRS; i++) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pairs[i]))
			fail("socketpair %d: %s", i, test_strerror(errno));
		for (e = 0; e < 2; e++) {
			snprintf(msg, sizeof(msg), "pair %d end %d", i, e);
			if (write(pairs[i][e], msg, strlen(msg)) != (ssize_t)strlen(msg))
				fail("send on pair %d: %s", i, test_strerror(errno));
		}
	}

	test_ready();
	test_wait_stop();

	for (i = 0; i < NPIPES; i++) {
		snprintf(msg, sizeof(msg), "pipe %d", i);
		snprintf(what, sizeof(what), "pipe %d", i);
		expect_read(pipes[i][0], msg, what);
		expect_through(pipes[i][1], pipes[i][0], what);
	}
	for (i = 0; i < NPAIRS; i++) {
		snprintf(what, sizeof(what), "pair %d", i);
		for (e = 0; e < 2; e++) {
			snprintf(msg, sizeof(msg), "pair %d end %d", i, 1 - e);
			expect_read(pairs[i][e], msg, what);
		}
		expect_through(pairs[i][0], pairs[i][1], what);
		expect_through(pairs[i][1], pairs[i][0], what);
	}
	pass();
}
