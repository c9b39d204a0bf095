/*
 * vfork_wait - a process that cannot stop: blocked in vfork() until its
 * child exits, it does not enter a ptrace stop when amber interrupts it.
 * A dump must give up after --timeout with an error and leave it as it
 * was. The child sleeps 3 s, then exits with status 7; after SIGTERM the
 * parent checks that it got that status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

int main(void)
{
	struct timespec ts = { 3, 0 };
	int status;
	pid_t child;

	test_init();
	test_ready();
	child = vfork();
	if (child == 0) {
		/* Only system calls: the child runs on its parent's memory. */
		syscall(SYS_nanosleep, &ts, NULL);
		syscall(SYS_exit, 7);
	}
	if (child < 0)
		fail("vfork: %s", strerror(errno));
	test_wait_stop();
	if (waitpid(child, &status, 0) != child)
		fail("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 7)
		fail("child status %#x, want exit 7", status);
	pass();
}
