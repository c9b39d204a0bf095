/*
 * loginuid - the audit login UID of each process, and of a thread,
 * survives a checkpoint (CRIU's loginuid).
 *
 * The parent sets its own to 3 (the first setting needs no privilege),
 * then starts a thread, which inherits it, and forks a child that changes
 * its own to 5 (changing a set value needs CAP_AUDIT_CONTROL): a child's
 * value must be restored on its own, not taken from its parent.  After
 * SIGTERM the parent reads all three from /proc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

static long read_luid(const char *path)
{
	char buf[32];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		fail("open %s: %s", path, strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0)
		fail("read %s: %s", path, strerror(errno));
	close(fd);
	buf[n] = 0;
	return strtol(buf, NULL, 10);
}

static void write_luid(int v)
{
	char buf[32];
	int fd = open("/proc/self/loginuid", O_WRONLY);
	int n = snprintf(buf, sizeof(buf), "%d", v);

	if (fd < 0 || write(fd, buf, n) != n)
		fail("set loginuid %d: %s", v, strerror(errno));
	close(fd);
}

static pid_t thread_tid;
static int tid_pipe[2];

static void *idle(void *arg)
{
	sigset_t all;

	/* SIGTERM is the main thread's, whose sigsuspend it must wake. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	thread_tid = syscall(SYS_gettid);
	if (write(tid_pipe[1], "t", 1) != 1)
		fail("thread: write: %s", strerror(errno));
	for (;;)
		pause();
	return arg;
}

int main(void)
{
	char path[3][64];
	int ready[2];
	pthread_t th;
	pid_t child;
	char c;

	test_init();
	if (access("/proc/self/loginuid", F_OK))
		fail("no /proc/self/loginuid: a kernel without audit");
	write_luid(3);
	if (pipe(tid_pipe) || pipe(ready))
		fail("pipe: %s", strerror(errno));
	if (pthread_create(&th, NULL, idle, NULL))
		fail("pthread_create");
	if (read(tid_pipe[0], &c, 1) != 1)
		fail("thread did not start");
	child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		write_luid(5);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	if (read(ready[0], &c, 1) != 1)
		fail("child did not start");
	snprintf(path[0], sizeof(path[0]), "/proc/%d/loginuid", getpid());
	snprintf(path[1], sizeof(path[1]), "/proc/%d/task/%d/loginuid", getpid(), thread_tid);
	snprintf(path[2], sizeof(path[2]), "/proc/%d/loginuid", child);
	if (read_luid(path[0]) != 3 || read_luid(path[1]) != 3 || read_luid(path[2]) != 5)
		fail("setup: loginuid %ld, thread's %ld, child's %ld",
		     read_luid(path[0]), read_luid(path[1]), read_luid(path[2]));
	test_ready();
	test_wait_stop();
	long self = read_luid(path[0]), thr = read_luid(path[1]), kid = read_luid(path[2]);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	if (self != 3)
		fail("loginuid %ld after restore, want 3", self);
	if (thr != 3)
		fail("thread's loginuid %ld after restore, want 3", thr);
	if (kid != 5)
		fail("child's loginuid %ld after restore, want 5", kid);
	pass();
}
