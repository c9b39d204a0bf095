/*
 * signal_flood - a process whose threads take signals all the time can
 * be frozen, dumped and restored.
 *
 * Each of three threads spins under a POSIX timer of its own that sends
 * it SIGUSR1 every 20 microseconds, so that a thread is nearly always in
 * the middle of taking a signal. A signal taken between amber's
 * interrupt and the stop it asked for answers the interrupt: amber must
 * ask again, or the thread runs on and amber waits for a stop that never
 * comes (its next signal's stop, again and again). The test dumps the
 * program many times; every dump must end. After the restore each thread
 * must still get its timer's signals, with their siginfo.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define NTHREADS 3

static volatile sig_atomic_t count[NTHREADS], bad;
static __thread int self = -1;

static void on_usr1(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	if (self < 0 || si->si_code != SI_TIMER || si->si_value.sival_int != self)
		bad = 1;
	else
		count[self]++;
}

/* arm gives the calling thread, number n, a timer of its own. */
static void arm(int n)
{
	struct sigevent ev = { 0 };
	struct itimerspec its = { { 0, 20000 }, { 0, 20000 } };
	timer_t t;

	self = n;
	ev.sigev_notify = SIGEV_THREAD_ID;
	ev._sigev_un._tid = syscall(SYS_gettid);
	ev.sigev_signo = SIGUSR1;
	ev.sigev_value.sival_int = n;
	if (timer_create(CLOCK_MONOTONIC, &ev, &t) || timer_settime(t, 0, &its, NULL))
		fail("timer: %s", strerror(errno));
}

/*
 * spin_for runs for ms milliseconds. It does not sleep: a sleep its
 * signals interrupt comes back with EINTR, and one whose next signal is
 * already pending when it starts sleeps no time at all, every time.
 */
static void spin_for(long ms)
{
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	do
		clock_gettime(CLOCK_MONOTONIC, &now);
	while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < ms);
}

static void *spin(void *arg)
{
	arm((int)(long)arg);
	for (;;)
		;
	return NULL;
}

int main(void)
{
	struct sigaction sa = { 0 };
	pthread_t th;
	int before[NTHREADS];

	test_init();
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	if (sigaction(SIGUSR1, &sa, NULL))
		fail("sigaction: %s", strerror(errno));
	for (long i = 1; i < NTHREADS; i++)
		if (pthread_create(&th, NULL, spin, (void *)i))
			fail("pthread_create");
	arm(0);
	test_ready();
	test_wait_stop();
	for (int i = 0; i < NTHREADS; i++)
		before[i] = count[i];
	spin_for(100);
	if (bad)
		fail("a SIGUSR1 not from the thread's own timer");
	for (int i = 0; i < NTHREADS; i++)
		if (count[i] - before[i] < 10)
			fail("thread %d: %d signals in 100 ms", i, count[i] - before[i]);
	pass();
}
