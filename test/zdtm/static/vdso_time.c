/*
 * vdso_time - the vDSO time functions still work after restore.
 *
 * glibc calls clock_gettime() and gettimeofday() through the vDSO, using
 * function pointers it resolved at startup; after restore the vDSO code and
 * its data page (vvar) must be where those pointers lead, and the data must
 * be live, not a stale copy.  Checks:
 *  - CLOCK_MONOTONIC read just before waiting <= the value read after SIGTERM
 *    (the restore must happen on the same boot, or in a time namespace);
 *  - vDSO CLOCK_REALTIME and gettimeofday() agree with the time(2) and
 *    clock_gettime(2) system calls (made directly with syscall()) to within
 *    a few seconds, and vDSO CLOCK_MONOTONIC agrees with the syscall;
 *  - 1,000,000 iterations of vDSO calls neither crash nor go backwards, and
 *    time actually advances during them (a frozen vvar page would not).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define ITERATIONS 1000000
#define MAX_SKEW_NS (3LL * 1000000000)	/* "a few seconds" */

static int64_t ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static int64_t vdso_ns(clockid_t clk, const char *name)
{
	struct timespec ts;

	if (clock_gettime(clk, &ts))
		fail("clock_gettime(%s) failed", name);
	return ns(&ts);
}

static int64_t sys_ns(clockid_t clk, const char *name)
{
	struct timespec ts;

	if (syscall(SYS_clock_gettime, clk, &ts))
		fail("syscall clock_gettime(%s) failed", name);
	return ns(&ts);
}

static int64_t absdiff(int64_t a, int64_t b)
{
	return a > b ? a - b : b - a;
}

/* Compare the vDSO against real system calls. */
static void check_against_syscalls(const char *when)
{
	int64_t rt, mono, sys_mono;
	struct timeval tv;
	time_t t;

	t = syscall(SYS_time, NULL);
	rt = vdso_ns(CLOCK_REALTIME, "CLOCK_REALTIME");
	if (absdiff(rt / 1000000000, t) > MAX_SKEW_NS / 1000000000)
		fail("%s: vDSO CLOCK_REALTIME says %lld s, time(2) syscall says %lld s",
		     when, (long long)(rt / 1000000000), (long long)t);
	if (gettimeofday(&tv, NULL))
		fail("%s: gettimeofday failed", when);
	if (absdiff(tv.tv_sec, t) > MAX_SKEW_NS / 1000000000)
		fail("%s: gettimeofday says %lld s, time(2) syscall says %lld s",
		     when, (long long)tv.tv_sec, (long long)t);
	rt = vdso_ns(CLOCK_REALTIME, "CLOCK_REALTIME");
	if (absdiff(rt, sys_ns(CLOCK_REALTIME, "CLOCK_REALTIME")) > MAX_SKEW_NS)
		fail("%s: vDSO and syscall CLOCK_REALTIME differ by more than 3 s",
		     when);
	mono = vdso_ns(CLOCK_MONOTONIC, "CLOCK_MONOTONIC");
	sys_mono = sys_ns(CLOCK_MONOTONIC, "CLOCK_MONOTONIC");
	if (absdiff(mono, sys_mono) > MAX_SKEW_NS)
		fail("%s: vDSO CLOCK_MONOTONIC %lld ns, syscall says %lld ns",
		     when, (long long)mono, (long long)sys_mono);
}

/* Hammer the vDSO; monotonic must never go backwards and must advance. */
static void loop(const char *when)
{
	int64_t first, prev, now;
	struct timespec ts;
	struct timeval tv;
	int i;

	first = prev = vdso_ns(CLOCK_MONOTONIC, "CLOCK_MONOTONIC");
	for (i = 0; i < ITERATIONS; i++) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = ns(&ts);
		if (now < prev)
			fail("%s: CLOCK_MONOTONIC went backwards in iteration %d: "
			     "%lld ns after %lld ns", when, i, (long long)now,
			     (long long)prev);
		prev = now;
		if (i % 16 == 0) {
			clock_gettime(CLOCK_REALTIME, &ts);
			gettimeofday(&tv, NULL);
		}
	}
	if (prev <= first)
		fail("%s: CLOCK_MONOTONIC did not advance during %d vDSO calls "
		     "(stuck at %lld ns): stale vvar data?", when, ITERATIONS,
		     (long long)first);
}

int main(void)
{
	int64_t before, after;

	test_init();

	/* Make sure the vDSO paths are resolved and used before the dump. */
	loop("before checkpoint");
	check_against_syscalls("before checkpoint");

	test_ready();
	before = vdso_ns(CLOCK_MONOTONIC, "CLOCK_MONOTONIC");
	test_wait_stop();
	after = vdso_ns(CLOCK_MONOTONIC, "CLOCK_MONOTONIC");

#ifndef OTHER_BOOT
	if (after < before)
		fail("CLOCK_MONOTONIC went backwards across the wait: %lld ns "
		     "before, %lld ns after", (long long)before, (long long)after);
#else
	(void)before;
	(void)after;
#endif
	check_against_syscalls("after SIGTERM");
	loop("after SIGTERM");
	check_against_syscalls("after loop");
	pass();
}
