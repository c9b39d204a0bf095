/*
 * nanosleep - a process checkpointed while sleeping in nanosleep().
 *
 * The test sleeps in nanosleep(1000 s) in a loop until SIGTERM.  A
 * checkpoint interrupts the sleep; whether the restored process resumes the
 * sleep (restart_syscall) or sees a spurious EINTR, the loop simply sleeps
 * again until the stop flag is set.  nanosleep() must never fail with
 * anything but EINTR, and a pattern in memory must survive.
 *
 * No lost wake-up: if SIGTERM arrives after the flag check but before the
 * kernel has read the requested time, the stop hook zeroes that time, so
 * nanosleep() returns at once instead of sleeping 1000 s.
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "zdtm.h"

#define SEED 0x5133b
static unsigned char pattern[256 * 1024];
static struct timespec ts;	/* the request, visible to the stop hook */

static void stop_hook(void)
{
	ts.tv_sec = 0;
	ts.tv_nsec = 0;
}

int main(void)
{
	struct timespec rem;

	test_init();
	test_on_stop(stop_hook);
	fill_pattern(pattern, sizeof(pattern), SEED);

	test_ready();
	for (;;) {
		ts.tv_sec = 1000;
		ts.tv_nsec = 0;
		/* ts must be stored before the flag is checked. */
		atomic_signal_fence(memory_order_seq_cst);
		if (test_stopped())
			break;
		if (nanosleep(&ts, &rem) == 0)
			continue;	/* slept the full 1000 s */
		if (errno != EINTR)
			fail("nanosleep(1000 s) failed with %s, expected EINTR",
			     test_strerror(errno));
		if (rem.tv_sec < 0 || rem.tv_sec > 1000 || rem.tv_nsec < 0 ||
		    rem.tv_nsec >= 1000000000)
			fail("nanosleep returned a bogus remaining time %lld.%09ld s",
			     (long long)rem.tv_sec, rem.tv_nsec);
		/* EINTR without the stop flag is allowed (e.g. a restore
		 * turned the interrupted sleep into EINTR): sleep again. */
	}

	expect_pattern(pattern, sizeof(pattern), SEED, "memory pattern");
	pass();
}
