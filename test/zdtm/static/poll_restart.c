/*
 * poll_restart - a call the kernel resumes through restart_syscall (here
 * poll with a timeout) must not return EINTR because of a checkpoint: to
 * the program a dump and restore must look like a stop and a continue,
 * which never interrupt it. Only the SIGTERM of the protocol may.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

int main(void)
{
	int p[2];
	struct pollfd pfd;

	test_init();
	if (pipe(p))
		fail("pipe: %s", strerror(errno));
	pfd.fd = p[0];
	pfd.events = POLLIN;
	test_ready();
	/* A thread given back by the dump re-enters poll from the start, as
	 * the kernel restarts a call after a stop: a SIGTERM can land just
	 * before it enters, its handler run, and poll then sleep its whole
	 * timeout. So the flag is looked at after each timeout too, and the
	 * timeout is short enough for the test to wait out. */
	for (;;) {
		int r = poll(&pfd, 1, 2000);
		if (r < 0 && errno == EINTR) {
			if (!test_stopped())
				fail("poll returned EINTR with no signal delivered");
			break;
		}
		if (r != 0)
			fail("poll returned %d (%s), want a timeout or SIGTERM", r, strerror(errno));
		if (test_stopped())
			break;
	}
	pass();
}
