/*
 * proc_dead - files of the /proc directory of a process that is gone: a
 * child is forked, its /proc/PID (O_DIRECTORY) and /proc/PID/status are
 * opened and entered as the working directory, then it is killed and
 * reaped.  CRIU restores such files with a helper task of the dead PID
 * (zdtm's remap_dead_pid, unhashed_proc).
 *
 * After SIGTERM: /proc/self shows the same paths for the three
 * ("/proc/PID (deleted)", "/proc/PID/status"), they are on a procfs,
 * nothing can be looked up in the directory, reading the status file
 * fails with ESRCH and getcwd() with ENOENT: files of that PID, dead.
 */
#include "zdtm.h"

int main(void)
{
	struct proc_dead d;

	test_init();
	proc_dead_open(&d, 1);
	test_ready();
	test_wait_stop();
	proc_dead_check(&d);
	pass();
}
