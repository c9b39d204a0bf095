/*
 * epoll_closed - watches added under descriptor numbers the process closed
 * or reused since survive C/R.  The kernel keeps such a watch while another
 * descriptor holds its file (as CRIU's epoll and epoll01 do).
 *
 * Pipe A is watched only under a copy at fd 200, closed since.  Pipe B is
 * watched under its own read end and under a copy at 201, closed since:
 * two watches of one file.  Pipe C is watched under a copy at 202, and 202
 * then reused for pipe D's read end, which is not watched.  After restore,
 * a byte written to each pipe in turn is reported once per watch, with
 * that watch's data, and nothing for D.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "zdtm.h"

enum { A, B, C, D, NPIPES };

static void add(int ep, int fd, uint64_t data)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = data };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
		fail("epoll_ctl ADD fd %d: %s", fd, test_strerror(errno));
}

static int copy_to(int fd, int to)
{
	if (dup2(fd, to) != to)
		fail("dup2 %d to %d: %s", fd, to, test_strerror(errno));
	return to;
}

/* expect writes a byte to pipe p, checks that the epoll reports exactly
 * the data in want (n of them, any order), then drains the pipe. */
static void expect(int ep, int p[2], const char *name, const uint64_t *want, int n)
{
	struct epoll_event ev[8];
	char c = 'x';
	int got;

	if (write(p[1], &c, 1) != 1)
		fail("write pipe %s: %s", name, test_strerror(errno));
	got = epoll_wait(ep, ev, 8, 1000);
	if (got != n)
		fail("pipe %s: %d events, want %d (first data %#llx)", name, got, n,
		     got > 0 ? (unsigned long long)ev[0].data.u64 : 0ULL);
	for (int i = 0; i < n; i++) {
		int found = 0;

		for (int j = 0; j < got; j++)
			found |= ev[j].data.u64 == want[i];
		if (!found)
			fail("pipe %s: no event with data %#llx", name, (unsigned long long)want[i]);
	}
	if (read(p[0], &c, 1) != 1)
		fail("read pipe %s: %s", name, test_strerror(errno));
}

int main(void)
{
	static const uint64_t a[] = { 0xa0 }, b[] = { 0xb0, 0xb1 }, c[] = { 0xc0 };
	int p[NPIPES][2], ep;
	struct epoll_event ev[8];

	test_init();
	for (int i = 0; i < NPIPES; i++)
		if (pipe2(p[i], O_NONBLOCK))
			fail("pipe: %s", test_strerror(errno));
	ep = epoll_create1(0);
	if (ep < 0)
		fail("epoll_create1: %s", test_strerror(errno));

	add(ep, copy_to(p[A][0], 200), a[0]);
	close(200);
	add(ep, p[B][0], b[0]);
	add(ep, copy_to(p[B][0], 201), b[1]);
	close(201);
	add(ep, copy_to(p[C][0], 202), c[0]);
	copy_to(p[D][0], 202);
	if (epoll_wait(ep, ev, 8, 0) != 0)
		fail("epoll ready before the dump");

	test_ready();
	test_wait_stop();

	if (fcntl(200, F_GETFD) != -1 || fcntl(201, F_GETFD) != -1)
		fail("fd 200 or 201, closed before the dump, is open after restore");
	expect(ep, p[A], "A", a, 1);
	expect(ep, p[B], "B", b, 2);
	expect(ep, p[C], "C", c, 1);
	expect(ep, p[D], "D", NULL, 0);
	pass();
}
