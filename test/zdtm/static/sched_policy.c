/*
 * sched_policy - scheduling policies, priorities and nice values survive
 * a checkpoint, per thread (CRIU's sched_policy00, and more).
 *
 * The main thread runs SCHED_BATCH at nice 7; a second thread runs
 * SCHED_IDLE; a child process runs SCHED_RR at priority 3 with
 * SCHED_RESET_ON_FORK.  After SIGTERM each is read again with
 * sched_getscheduler, sched_getparam and getpriority.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

static pid_t thread_tid;
static pthread_mutex_t started = PTHREAD_MUTEX_INITIALIZER;

static void *idle_thread(void *arg)
{
	struct sched_param p = { 0 };

	(void)arg;
	thread_tid = syscall(SYS_gettid);
	if (sched_setscheduler(0, SCHED_IDLE, &p))
		thread_tid = -errno;
	pthread_mutex_unlock(&started);
	for (;;)
		pause();
	return NULL;
}

static void expect(pid_t tid, const char *who, int policy, int prio, int nice)
{
	struct sched_param p;
	int got;

	got = sched_getscheduler(tid);
	if (got != policy)
		fail("%s (%d): policy %#x, want %#x", who, tid, got, policy);
	if (sched_getparam(tid, &p) || p.sched_priority != prio)
		fail("%s (%d): priority %d, want %d", who, tid, p.sched_priority, prio);
	errno = 0;
	got = getpriority(PRIO_PROCESS, tid);
	if (errno || got != nice)
		fail("%s (%d): nice %d, want %d", who, tid, got, nice);
}

int main(void)
{
	struct sched_param p = { 0 };
	sigset_t term;
	pthread_t th;
	pid_t child;

	test_init();
	if (setpriority(PRIO_PROCESS, 0, 7) || sched_setscheduler(0, SCHED_BATCH, &p))
		fail("SCHED_BATCH at nice 7: %s", strerror(errno));
	pthread_mutex_lock(&started);
	/* The thread starts with SIGTERM blocked, so that it goes to the
	 * main thread, which waits for it. */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &term, NULL);
	if (pthread_create(&th, NULL, idle_thread, NULL))
		fail("pthread_create");
	pthread_sigmask(SIG_UNBLOCK, &term, NULL);
	pthread_mutex_lock(&started);
	if (thread_tid < 0)
		fail("SCHED_IDLE: %s", strerror(-thread_tid));
	child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		for (;;)
			pause();
	}
	p.sched_priority = 3;
	if (sched_setscheduler(child, SCHED_RR | SCHED_RESET_ON_FORK, &p))
		fail("SCHED_RR for the child: %s", strerror(errno));
	expect(getpid(), "main", SCHED_BATCH, 0, 7);
	expect(thread_tid, "thread", SCHED_IDLE, 0, 7);
	expect(child, "child", SCHED_RR | SCHED_RESET_ON_FORK, 3, 7);
	test_ready();
	test_wait_stop();
	expect(getpid(), "main", SCHED_BATCH, 0, 7);
	expect(thread_tid, "thread", SCHED_IDLE, 0, 7);
	expect(child, "child", SCHED_RR | SCHED_RESET_ON_FORK, 3, 7);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	pass();
}
