/*
 * epoll00 - an epoll instance keeps its watches across C/R.
 *
 * An epoll watches the read end of a pipe (EPOLLIN, data 0x1111222233334444)
 * and an eventfd (EPOLLIN | EPOLLET, data 0xdeadbeef00000042); a second
 * epoll, non-blocking, watches the first one.  Nothing is ready at dump.
 * After restore: epoll_wait reports nothing; a byte written to the pipe is
 * reported with the pipe's data, the eventfd's counter with the eventfd's,
 * each exactly once per wait with its events, and the outer epoll sees the
 * inner one become ready.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "zdtm.h"

#define PIPE_DATA 0x1111222233334444ULL
#define EFD_DATA 0xdeadbeef00000042ULL
#define INNER_DATA 0x77ULL

static int wait_events(int ep, struct epoll_event *ev, int max)
{
	int n = epoll_wait(ep, ev, max, 1000);

	if (n < 0)
		fail("epoll_wait on fd %d: %s", ep, test_strerror(errno));
	return n;
}

static void add(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
		fail("epoll_ctl ADD fd %d to %d: %s", fd, ep, test_strerror(errno));
}

static int has(struct epoll_event *ev, int n, uint64_t data, uint32_t events)
{
	for (int i = 0; i < n; i++)
		if (ev[i].data.u64 == data)
			return (ev[i].events & events) == events;
	return 0;
}

int main(void)
{
	struct epoll_event ev[8];
	int p[2], efd, ep, outer, n;
	uint64_t one = 1;

	test_init();
	if (pipe(p))
		fail("pipe: %s", test_strerror(errno));
	efd = eventfd(0, EFD_NONBLOCK);
	ep = epoll_create1(0);
	outer = epoll_create1(0);
	if (efd < 0 || ep < 0 || outer < 0)
		fail("eventfd/epoll_create1: %s", test_strerror(errno));
	if (fcntl(outer, F_SETFL, O_NONBLOCK))
		fail("fcntl O_NONBLOCK on epoll: %s", test_strerror(errno));
	add(ep, p[0], EPOLLIN, PIPE_DATA);
	add(ep, efd, EPOLLIN | EPOLLET, EFD_DATA);
	add(outer, ep, EPOLLIN, INNER_DATA);
	if (epoll_wait(ep, ev, 8, 0) != 0)
		fail("epoll fd %d ready before the dump", ep);

	test_ready();
	test_wait_stop();

	if (!(fcntl(outer, F_GETFL) & O_NONBLOCK) || (fcntl(ep, F_GETFL) & O_NONBLOCK))
		fail("O_NONBLOCK of the epolls (fds %d, %d) not restored", ep, outer);
	if ((n = epoll_wait(ep, ev, 8, 0)) != 0)
		fail("epoll fd %d reports %d events with nothing written "
		     "(first data %#llx)", ep, n, (unsigned long long)ev[0].data.u64);
	if (write(p[1], "x", 1) != 1)
		fail("write to pipe fd %d: %s", p[1], test_strerror(errno));
	n = wait_events(ep, ev, 8);
	if (n != 1 || !has(ev, n, PIPE_DATA, EPOLLIN))
		fail("after writing to the pipe, epoll fd %d reported %d events "
		     "(first: events %#x data %#llx), want EPOLLIN with data %#llx",
		     ep, n, n > 0 ? ev[0].events : 0,
		     n > 0 ? (unsigned long long)ev[0].data.u64 : 0ULL, PIPE_DATA);
	if (wait_events(outer, ev, 8) != 1 || !has(ev, 1, INNER_DATA, EPOLLIN))
		fail("outer epoll fd %d does not see epoll fd %d ready", outer, ep);
	if (write(efd, &one, sizeof(one)) != sizeof(one))
		fail("write to eventfd %d: %s", efd, test_strerror(errno));
	n = wait_events(ep, ev, 8);
	if (n != 2 || !has(ev, n, PIPE_DATA, EPOLLIN) || !has(ev, n, EFD_DATA, EPOLLIN))
		fail("after writing to the eventfd, epoll fd %d reported %d events, "
		     "want the pipe's and the eventfd's (data %#llx)", ep, n, EFD_DATA);
	/* Edge-triggered: the eventfd is not reported again. */
	n = wait_events(ep, ev, 8);
	if (n != 1 || !has(ev, n, PIPE_DATA, EPOLLIN))
		fail("EPOLLET of the eventfd watch lost: %d events on a second wait", n);
	pass();
}
