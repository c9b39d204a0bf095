/*
 * oom_score_adj - the OOM score adjustment of each process survives a
 * checkpoint (CRIU's oom_score_adj, and per process).
 *
 * The parent sets 500 and forks a child that lowers its own to 123 (a
 * child inherits its parent's value, so the child's must be restored on
 * its own).  After SIGTERM the parent reads both from /proc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

static int read_adj(pid_t pid)
{
	char path[64], buf[32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/oom_score_adj", pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		fail("open %s: %s", path, strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0)
		fail("read %s: %s", path, strerror(errno));
	close(fd);
	buf[n] = 0;
	return atoi(buf);
}

static void write_adj(int v)
{
	char buf[32];
	int fd = open("/proc/self/oom_score_adj", O_WRONLY);
	int n = snprintf(buf, sizeof(buf), "%d", v);

	if (fd < 0 || write(fd, buf, n) != n)
		fail("set oom_score_adj %d: %s", v, strerror(errno));
	close(fd);
}

int main(void)
{
	int ready[2];
	pid_t child;
	char c;

	test_init();
	write_adj(500);
	if (pipe(ready))
		fail("pipe: %s", strerror(errno));
	child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		write_adj(123);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	if (read(ready[0], &c, 1) != 1)
		fail("child did not start");
	if (read_adj(getpid()) != 500 || read_adj(child) != 123)
		fail("setup: oom_score_adj %d and %d", read_adj(getpid()), read_adj(child));
	test_ready();
	test_wait_stop();
	int self = read_adj(getpid()), kid = read_adj(child);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	if (self != 500)
		fail("oom_score_adj %d after restore, want 500", self);
	if (kid != 123)
		fail("child's oom_score_adj %d after restore, want 123", kid);
	pass();
}
