/*
 * ns_time_kids - a process that made a time namespace for its children
 * (unshare(CLONE_NEWTIME)) without entering it cannot be dumped: the
 * namespace has offsets but no task to take them from (CRIU refuses it
 * too, zdtm's timens_for_kids).  The dump must fail naming it, and the
 * process run on and pass.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "zdtm.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

int main(void)
{
	test_init();
	if (unshare(CLONE_NEWTIME))
		fail("unshare(CLONE_NEWTIME): %s", strerror(errno));
	test_ready();
	test_wait_stop();
	pass();
}
