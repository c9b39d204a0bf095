/*
 * thp_disable - PR_SET_THP_DISABLE survives a checkpoint, per process
 * (CRIU's thp_disable).
 *
 * The parent disables transparent huge pages and forks a child, which
 * inherits the flag and enables them again for itself.  After SIGTERM the
 * parent reads its own flag and asks the child for its (SIGTERM; the
 * child answers through a pipe).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

int main(void)
{
	int answer[2], v;
	pid_t child;

	test_init();
	if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0))
		fail("PR_SET_THP_DISABLE: %s", strerror(errno));
	if (pipe(answer))
		fail("pipe: %s", strerror(errno));
	child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		if (prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0))
			_exit(1);
		v = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
		if (write(answer[1], &v, sizeof(v)) != sizeof(v))
			_exit(1);
		test_wait_stop();
		v = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
		_exit(write(answer[1], &v, sizeof(v)) != sizeof(v));
	}
	if (read(answer[0], &v, sizeof(v)) != sizeof(v) || v != 0)
		fail("setup: the child's THP flag is %d, want 0", v);
	if (prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) != 1)
		fail("setup: PR_GET_THP_DISABLE is not 1");
	test_ready();
	test_wait_stop();
	int self = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
	kill(child, SIGTERM);
	alarm(10);
	if (read(answer[0], &v, sizeof(v)) != sizeof(v))
		fail("no answer from the child: %s", strerror(errno));
	waitpid(child, NULL, 0);
	if (self != 1)
		fail("PR_GET_THP_DISABLE is %d after restore, want 1", self);
	if (v != 0)
		fail("the child's PR_GET_THP_DISABLE is %d after restore, want 0", v);
	pass();
}
