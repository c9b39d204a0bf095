/*
 * timers00 - interval and POSIX timers keep running across a checkpoint.
 *
 * Arms ITIMER_REAL (SIGALRM every 50 ms) and a POSIX timer on
 * CLOCK_MONOTONIC (SIGUSR1 every 30 ms, sigev_value 0x1234) plus a second,
 * disarmed POSIX timer, and counts the signals.  After SIGTERM it checks
 * that both armed timers still fire (the counts grow over 400 ms), that
 * the POSIX timers kept their IDs, that the disarmed one is still
 * disarmed, and that the interval of each is what was set.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "zdtm.h"

static volatile sig_atomic_t alarms, usr1s;
static volatile sig_atomic_t bad_value;

static void on_alarm(int sig) { (void)sig; alarms++; }

static void on_usr1(int sig, siginfo_t *si, void *ctx)
{
	(void)sig; (void)ctx;
	if (si->si_value.sival_int != 0x1234)
		bad_value = 1;
	usr1s++;
}

static void handle(int sig, void (*h)(int), void (*a)(int, siginfo_t *, void *))
{
	struct sigaction sa = { 0 };

	if (a) {
		sa.sa_sigaction = a;
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
	} else {
		sa.sa_handler = h;
		sa.sa_flags = SA_RESTART;
	}
	if (sigaction(sig, &sa, NULL))
		fail("sigaction %d: %s", sig, strerror(errno));
}

int main(void)
{
	struct itimerval itv = { { 0, 50000 }, { 0, 50000 } }, got;
	struct itimerspec its = { { 0, 30000000 }, { 0, 30000000 } }, cur;
	struct sigevent ev = { 0 };
	timer_t armed, idle;
	int a0, u0;

	test_init();
	handle(SIGALRM, on_alarm, NULL);
	handle(SIGUSR1, NULL, on_usr1);
	if (setitimer(ITIMER_REAL, &itv, NULL))
		fail("setitimer: %s", strerror(errno));
	ev.sigev_notify = SIGEV_SIGNAL;
	ev.sigev_signo = SIGUSR1;
	ev.sigev_value.sival_int = 0x1234;
	if (timer_create(CLOCK_MONOTONIC, &ev, &armed) || timer_create(CLOCK_REALTIME, &ev, &idle))
		fail("timer_create: %s", strerror(errno));
	if (timer_settime(armed, 0, &its, NULL))
		fail("timer_settime: %s", strerror(errno));
	test_ready();
	test_wait_stop();

	a0 = alarms;
	u0 = usr1s;
	for (int i = 0; i < 40; i++) {
		struct timespec ts = { 0, 10000000 };
		while (nanosleep(&ts, &ts) && errno == EINTR)
			;
	}
	if (alarms < a0 + 3)
		fail("ITIMER_REAL stopped: %d SIGALRM in 400 ms", alarms - a0);
	if (usr1s < u0 + 5)
		fail("POSIX timer stopped: %d SIGUSR1 in 400 ms", usr1s - u0);
	if (bad_value)
		fail("SIGUSR1 carried another sigev_value");
	if (getitimer(ITIMER_REAL, &got) || got.it_interval.tv_usec != 50000)
		fail("ITIMER_REAL interval %ld us, want 50000", (long)got.it_interval.tv_usec);
	if (timer_gettime(armed, &cur))
		fail("timer_gettime on the armed timer's id: %s", strerror(errno));
	if (cur.it_interval.tv_nsec != 30000000)
		fail("POSIX timer interval %ld ns, want 30000000", cur.it_interval.tv_nsec);
	if (timer_gettime(idle, &cur))
		fail("timer_gettime on the idle timer's id: %s", strerror(errno));
	if (cur.it_value.tv_sec || cur.it_value.tv_nsec)
		fail("the disarmed POSIX timer is armed after restore");
	pass();
}
