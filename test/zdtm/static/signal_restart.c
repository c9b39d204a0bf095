/*
 * signal_restart - a signal that is pending when a restored task is
 * released must end or restart the system call the task was frozen in
 * exactly as the kernel would have, had the signal come while it slept:
 * once a handler runs, a call that returned ERESTARTNOHAND or
 * ERESTART_RESTARTBLOCK fails with EINTR, ERESTARTSYS restarts only under
 * SA_RESTART, and a call nothing interrupted goes on sleeping.
 *
 * Six threads block in six calls, SIGTERM blocked, each with only its own
 * signal unblocked:
 *   poll-timeout   poll(60 s)         SIGUSR1  -> EINTR (RESTARTBLOCK)
 *   poll-forever   poll(-1)           SIGUSR1  -> EINTR (NOHAND)
 *   nanosleep      nanosleep(1000 s)  SIGUSR1  -> EINTR (RESTARTBLOCK)
 *   read-intr      read(pipe)         SIGUSR1  -> EINTR (SYS, no SA_RESTART)
 *   read-restart   read(pipe)         SIGUSR2  -> restarted (SA_RESTART):
 *                                                 gets the byte of SIGTERM
 *   quiet          poll(60 s)         none     -> no EINTR: gets the byte
 *
 * The driver (test/signal_restart_test.go) dumps it, queues each signal to
 * its thread in the images (as if it had arrived during the dump), and
 * restores it: the signals are delivered at release. After SIGTERM each
 * thread must have seen its handler run once (none for quiet) and its call
 * end as listed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

enum call { POLL_TIMEOUT, POLL_FOREVER, NANOSLEEP, READ };

struct worker {
	const char *name;
	enum call call;
	int sig;		/* its own signal; 0: none */
	int want_eintr;		/* the call must fail with EINTR */
	int fd;			/* what it polls or reads */
	pid_t tid;
	atomic_int handled;	/* runs of its handler */
	atomic_int done;
	long ret;
	int err;
};

static int never[2], restart_pipe[2], intr_pipe[2], quiet_pipe[2];

static struct worker workers[] = {
	{ .name = "poll-timeout", .call = POLL_TIMEOUT, .sig = SIGUSR1, .want_eintr = 1 },
	{ .name = "poll-forever", .call = POLL_FOREVER, .sig = SIGUSR1, .want_eintr = 1 },
	{ .name = "nanosleep", .call = NANOSLEEP, .sig = SIGUSR1, .want_eintr = 1 },
	{ .name = "read-intr", .call = READ, .sig = SIGUSR1, .want_eintr = 1 },
	{ .name = "read-restart", .call = READ, .sig = SIGUSR2 },
	{ .name = "quiet", .call = POLL_TIMEOUT },
};
#define NWORKERS (int)(sizeof(workers) / sizeof(workers[0]))

static __thread struct worker *self;

static void on_signal(int sig)
{
	(void)sig;
	if (self)
		atomic_fetch_add(&self->handled, 1);
}

static long run_call(struct worker *w)
{
	struct pollfd pfd = { .fd = w->fd, .events = POLLIN };
	struct timespec ts = { 1000, 0 };
	char c;

	switch (w->call) {
	case POLL_TIMEOUT:
		return poll(&pfd, 1, 60000);
	case POLL_FOREVER:
		return poll(&pfd, 1, -1);
	case NANOSLEEP:
		return nanosleep(&ts, NULL);
	case READ:
		return read(w->fd, &c, 1);
	}
	return -1;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	sigset_t set;

	self = w;
	w->tid = gettid();
	pthread_setname_np(pthread_self(), w->name);
	sigfillset(&set);
	if (w->sig)
		sigdelset(&set, w->sig);
	pthread_sigmask(SIG_SETMASK, &set, NULL);
	errno = 0;
	w->ret = run_call(w);
	w->err = errno;
	atomic_store(&w->done, 1);
	return NULL;
}

/* The syscall /proc says the thread sleeps in, -1 if none. */
static long blocked_in(pid_t tid)
{
	char path[64], buf[256];
	long nr = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fgets(buf, sizeof(buf), f) && sscanf(buf, "%ld", &nr) != 1)
		nr = -1;
	fclose(f);
	return nr;
}

static long want_syscall(const struct worker *w)
{
	switch (w->call) {
	case POLL_TIMEOUT:
	case POLL_FOREVER:
		return SYS_poll;
	case NANOSLEEP:
		return SYS_clock_nanosleep;
	case READ:
		return SYS_read;
	}
	return -1;
}

static void wait_all_blocked(void)
{
	for (int tries = 0; tries < 5000; tries++) {
		int n = 0;

		for (int i = 0; i < NWORKERS; i++)
			if (workers[i].tid && blocked_in(workers[i].tid) == want_syscall(&workers[i]))
				n++;
		if (n == NWORKERS)
			return;
		usleep(1000);
	}
	fail("threads not all asleep in their calls after 5 s");
}

static void check(pthread_t th, struct worker *w)
{
	struct timespec deadline;
	int err;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 5;
	if ((err = pthread_timedjoin_np(th, NULL, &deadline)))
		fail("thread %s (tid %d): still in its call 5 s after SIGTERM (%s)",
		     w->name, w->tid, test_strerror(err));
	if (atomic_load(&w->handled) != (w->sig ? 1 : 0))
		fail("thread %s: its handler ran %d times, want %d", w->name,
		     atomic_load(&w->handled), w->sig ? 1 : 0);
	if (w->want_eintr) {
		if (w->ret != -1 || w->err != EINTR)
			fail("thread %s: call returned %ld (%s), want EINTR", w->name,
			     w->ret, test_strerror(w->err));
		return;
	}
	if (w->ret != 1)
		fail("thread %s: call returned %ld (%s), want the byte written after SIGTERM",
		     w->name, w->ret, test_strerror(w->err));
}

int main(void)
{
	struct sigaction sa;
	pthread_t th[NWORKERS];
	sigset_t term, old;

	test_init();
	if (pipe(never) || pipe(restart_pipe) || pipe(intr_pipe) || pipe(quiet_pipe))
		fail("pipe: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	if (sigaction(SIGUSR1, &sa, NULL))
		fail("sigaction: %s", strerror(errno));
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGUSR2, &sa, NULL))
		fail("sigaction: %s", strerror(errno));
	for (int i = 0; i < NWORKERS; i++)
		workers[i].fd = never[0];
	workers[3].fd = intr_pipe[0];
	workers[4].fd = restart_pipe[0];
	workers[5].fd = quiet_pipe[0];

	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &term, &old);
	for (int i = 0; i < NWORKERS; i++)
		if (pthread_create(&th[i], NULL, worker_main, &workers[i]))
			fail("pthread_create: %s", strerror(errno));
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	wait_all_blocked();
	test_ready();

	test_wait_stop();
	if (write(restart_pipe[1], "r", 1) != 1 || write(quiet_pipe[1], "q", 1) != 1)
		fail("write: %s", strerror(errno));
	for (int i = 0; i < NWORKERS; i++)
		check(th[i], &workers[i]);
	pass();
}
