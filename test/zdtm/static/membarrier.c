/*
 * membarrier - membarrier registrations survive a checkpoint, per
 * process (CRIU's membarrier).
 *
 * The parent registers GLOBAL_EXPEDITED and PRIVATE_EXPEDITED, then
 * forks a child (whose memory starts with its parent's registrations)
 * that adds PRIVATE_EXPEDITED_SYNC_CORE.
 * After SIGTERM each compares MEMBARRIER_CMD_GET_REGISTRATIONS with what
 * it had, and the parent runs the barriers it registered for, which fail
 * with EPERM without the registration.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/membarrier.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#ifndef MEMBARRIER_CMD_GET_REGISTRATIONS
#define MEMBARRIER_CMD_GET_REGISTRATIONS (1 << 9)
#endif

static int membarrier(int cmd)
{
	return syscall(SYS_membarrier, cmd, 0, 0);
}

int main(void)
{
	int answer[2], mine, kid[2];
	pid_t child;

	test_init();
	if (membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) ||
	    membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED))
		fail("register: %s", strerror(errno));
	mine = membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS);
	if (mine < 0)
		fail("MEMBARRIER_CMD_GET_REGISTRATIONS: %s", strerror(errno));
	if (pipe(answer))
		fail("pipe: %s", strerror(errno));
	child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		int v;

		if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE))
			_exit(1);
		v = membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS);
		if (write(answer[1], &v, sizeof(v)) != sizeof(v))
			_exit(1);
		test_wait_stop();
		v = membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS);
		_exit(write(answer[1], &v, sizeof(v)) != sizeof(v));
	}
	if (read(answer[0], &kid[0], sizeof(int)) != sizeof(int) || kid[0] < 0)
		fail("setup: no registrations from the child");
	test_ready();
	test_wait_stop();
	int now = membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS);
	kill(child, SIGTERM);
	alarm(10);
	if (read(answer[0], &kid[1], sizeof(int)) != sizeof(int))
		fail("no answer from the child: %s", strerror(errno));
	waitpid(child, NULL, 0);
	if (now != mine)
		fail("registrations %#x after restore, want %#x", now, mine);
	if (kid[1] != kid[0])
		fail("the child's registrations %#x after restore, want %#x", kid[1], kid[0]);
	if (membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) || membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED))
		fail("barrier after restore: %s", strerror(errno));
	pass();
}
