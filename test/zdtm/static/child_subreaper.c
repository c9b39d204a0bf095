/*
 * child_subreaper - the child subreaper flag survives a checkpoint, and
 * works for descendants that existed before it was set (CRIU's
 * child_subreaper and child_subreaper_existing_child).
 *
 * R forks H, which forks O; then R sets PR_SET_CHILD_SUBREAPER.  After
 * SIGTERM R checks PR_GET_CHILD_SUBREAPER and kills H: the orphan O must
 * be reparented to R, not to init, and reports its new parent through a
 * pipe; R reaps it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

/* O: wait until orphaned, then report the new parent. */
static void orphan(pid_t h, int report)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	pid_t ppid;

	while ((ppid = getppid()) == h)
		nanosleep(&ts, NULL);
	if (write(report, &ppid, sizeof(ppid)) != sizeof(ppid))
		_exit(1);
	_exit(0);
}

int main(void)
{
	int report[2], ready[2], v = 0;
	pid_t h, o, ppid;

	test_init();
	if (pipe(report) || pipe(ready))
		fail("pipe: %s", strerror(errno));
	h = fork();
	if (h < 0)
		fail("fork: %s", strerror(errno));
	if (h == 0) {
		o = fork();
		if (o == 0)
			orphan(getppid(), report[1]);
		if (o < 0 || write(ready[1], &o, sizeof(o)) != sizeof(o))
			_exit(1);
		for (;;)
			pause();
	}
	if (read(ready[0], &o, sizeof(o)) != sizeof(o))
		fail("H did not start O");
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
		fail("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
	test_ready();
	test_wait_stop();
	if (prctl(PR_GET_CHILD_SUBREAPER, &v, 0, 0, 0))
		fail("PR_GET_CHILD_SUBREAPER: %s", strerror(errno));
	kill(h, SIGKILL);
	waitpid(h, NULL, 0);
	alarm(10);
	if (read(report[0], &ppid, sizeof(ppid)) != sizeof(ppid))
		fail("no report from the orphan: %s", strerror(errno));
	if (waitpid(o, NULL, 0) != o)
		fail("cannot reap the orphan %d: %s", o, strerror(errno));
	if (v != 1)
		fail("PR_GET_CHILD_SUBREAPER says %d after restore, want 1", v);
	if (ppid != getpid())
		fail("orphan %d reparented to %d, not to its subreaper %d", o, ppid, getpid());
	pass();
}
