/*
 * timerfd00 - timerfds keep their clock, time left, interval and unread
 * expirations across C/R.
 *
 * A periodic CLOCK_MONOTONIC timer (3 s, interval 3 s) is armed 1 s before
 * "ready", so about 2 s are left when it is dumped.  A one-shot
 * CLOCK_REALTIME timer, non-blocking, expired before the dump and was not
 * read: it holds one tick.  After restore: the periodic timer still has its
 * 3 s interval, its time left did not go back to the full 3 s (unless it
 * already fired again), and it fires within 3 s; the one-shot timer reads
 * exactly 1 expiration and is then disarmed and empty.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

static double secs(struct timespec t)
{
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void)
{
	struct itimerspec its = { .it_value = { 3, 0 }, .it_interval = { 3, 0 } };
	struct itimerspec once = { .it_value = { 0, 1000000 } };
	struct itimerspec cur;
	struct pollfd p;
	uint64_t ticks;
	int periodic, oneshot;

	test_init();
	periodic = timerfd_create(CLOCK_MONOTONIC, 0);
	oneshot = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
	if (periodic < 0 || oneshot < 0)
		fail("timerfd_create: %s", test_strerror(errno));
	if (timerfd_settime(periodic, 0, &its, NULL) ||
	    timerfd_settime(oneshot, 0, &once, NULL))
		fail("timerfd_settime: %s", test_strerror(errno));
	sleep(1);

	test_ready();
	test_wait_stop();

	if (timerfd_gettime(periodic, &cur))
		fail("timerfd_gettime fd %d: %s", periodic, test_strerror(errno));
	if (cur.it_interval.tv_sec != 3 || cur.it_interval.tv_nsec != 0)
		fail("periodic timerfd %d: interval %.3f s, want 3 s", periodic,
		     secs(cur.it_interval));
	if (secs(cur.it_value) == 0)
		fail("periodic timerfd %d is disarmed", periodic);
	p.fd = periodic;
	p.events = POLLIN;
	/* Not fired since the restore: the time left went on from the ~2 s
	 * left at the dump, it did not start again from 3 s. */
	if (poll(&p, 1, 0) == 0 && secs(cur.it_value) > 2.5)
		fail("periodic timerfd %d: %.3f s left after restore, want at most "
		     "the ~2 s left at the dump", periodic, secs(cur.it_value));
	if (poll(&p, 1, 3500) != 1)
		fail("periodic timerfd %d did not fire within 3.5 s", periodic);
	if (read(periodic, &ticks, sizeof(ticks)) != sizeof(ticks) || ticks < 1)
		fail("read periodic timerfd %d: %s", periodic, test_strerror(errno));

	if (!(fcntl(oneshot, F_GETFL) & O_NONBLOCK))
		fail("one-shot timerfd %d lost O_NONBLOCK", oneshot);
	if (read(oneshot, &ticks, sizeof(ticks)) != sizeof(ticks))
		fail("one-shot timerfd %d: its expiration before the dump is "
		     "lost: %s", oneshot, test_strerror(errno));
	if (ticks != 1)
		fail("one-shot timerfd %d read %llu expirations, want 1", oneshot,
		     (unsigned long long)ticks);
	if (timerfd_gettime(oneshot, &cur) || secs(cur.it_value) != 0 ||
	    secs(cur.it_interval) != 0)
		fail("one-shot timerfd %d armed again after restore", oneshot);
	if (read(oneshot, &ticks, sizeof(ticks)) != -1 || errno != EAGAIN)
		fail("one-shot timerfd %d: a second expiration", oneshot);
	pass();
}
