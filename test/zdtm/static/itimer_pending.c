/*
 * itimer_pending - a periodic ITIMER_REAL whose SIGALRM is pending at the
 * checkpoint keeps firing after it.
 *
 * The kernel re-arms a periodic real timer only when the process takes
 * the SIGALRM it sent: with SIGALRM blocked and one pending, getitimer
 * says no time is left. It blocks SIGALRM, arms a 20 ms periodic timer and
 * waits until the signal is pending. After SIGTERM it unblocks SIGALRM:
 * the pending one arrives, and the timer must go on (at least 5 more in
 * 400 ms) with its 20 ms interval.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "zdtm.h"

static volatile sig_atomic_t alarms;

static void on_alarm(int sig) { (void)sig; alarms++; }

int main(void)
{
	struct itimerval itv = { { 0, 20000 }, { 0, 20000 } }, got;
	struct sigaction sa = { 0 };
	struct timespec pause = { 0, 100000000 }, step = { 0, 400000000 };
	sigset_t alrm, pending;

	test_init();
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGALRM, &sa, NULL))
		fail("sigaction: %s", strerror(errno));
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	if (sigprocmask(SIG_BLOCK, &alrm, NULL))
		fail("sigprocmask: %s", strerror(errno));
	if (setitimer(ITIMER_REAL, &itv, NULL))
		fail("setitimer: %s", strerror(errno));
	nanosleep(&pause, NULL);
	if (sigpending(&pending) || !sigismember(&pending, SIGALRM))
		fail("SIGALRM not pending after 100 ms");
	test_ready();
	test_wait_stop();
	if (getitimer(ITIMER_REAL, &got))
		fail("getitimer: %s", strerror(errno));
	if (got.it_interval.tv_sec != 0 || got.it_interval.tv_usec != 20000)
		fail("interval %ld.%06ld, want 0.020000", (long)got.it_interval.tv_sec, (long)got.it_interval.tv_usec);
	if (sigprocmask(SIG_UNBLOCK, &alrm, NULL))
		fail("sigprocmask: %s", strerror(errno));
	while (nanosleep(&step, &step) && errno == EINTR)
		;
	if (alarms < 6)
		fail("ITIMER_REAL stopped: %d SIGALRM in 400 ms after unblocking", (int)alarms);
	pass();
}
