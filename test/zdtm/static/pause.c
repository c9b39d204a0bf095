/*
 * pause - a process checkpointed while blocked in pause().
 *
 * pause() only returns when a handler runs, so the restored process must be
 * back in pause() (or see EINTR) and must still receive SIGTERM.  A memory
 * pattern must survive.
 *
 * No lost wake-up: a SIGTERM arriving between the flag check and pause()
 * would leave pause() blocked forever, so the stop hook siglongjmp()s out of
 * the waiting code instead of relying on pause() returning.
 */
#include <errno.h>
#include <setjmp.h>
#include <string.h>
#include <unistd.h>

#include "zdtm.h"

#define SEED 0x9a05e
static unsigned char pattern[256 * 1024];

static sigjmp_buf wait_env;
static volatile sig_atomic_t waiting;

static void stop_hook(void)
{
	if (waiting) {
		waiting = 0;
		siglongjmp(wait_env, 1);
	}
}

int main(void)
{
	test_init();
	test_on_stop(stop_hook);
	fill_pattern(pattern, sizeof(pattern), SEED);

	test_ready();
	if (sigsetjmp(wait_env, 1) == 0) {
		waiting = 1;
		while (!test_stopped()) {
			/* Returns -1/EINTR after a handler, e.g. a restore
			 * turning the interrupted pause into EINTR. */
			if (pause() != -1 || errno != EINTR)
				fail("pause() returned without EINTR: %s",
				     test_strerror(errno));
		}
		waiting = 0;
	}
	if (!test_stopped())
		fail("left pause() without SIGTERM");

	expect_pattern(pattern, sizeof(pattern), SEED, "memory pattern");
	pass();
}
