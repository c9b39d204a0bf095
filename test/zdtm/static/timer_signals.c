/*
 * timer_signals - signals that arrive while amber restores the process
 * keep their siginfo.
 *
 * A POSIX timer sends SIGUSR1 every millisecond with sigev_value 0xabcd,
 * so that some fire while the restored process is still stopped under
 * amber: each must reach the handler as the timer's (SI_TIMER, its
 * value), never as a plain kill (SI_USER) that the tracer made of it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "zdtm.h"

static volatile sig_atomic_t count, bad_code, bad_value;

static void on_usr1(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	if (si->si_code != SI_TIMER)
		bad_code = si->si_code == 0 ? 1000 : si->si_code;
	else if (si->si_value.sival_int != 0xabcd)
		bad_value = 1;
	count++;
}

int main(void)
{
	struct sigaction sa = { 0 };
	struct sigevent ev = { 0 };
	struct itimerspec its = { { 0, 1000000 }, { 0, 1000000 } };
	timer_t t;
	int before;

	test_init();
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	if (sigaction(SIGUSR1, &sa, NULL))
		fail("sigaction: %s", strerror(errno));
	ev.sigev_notify = SIGEV_SIGNAL;
	ev.sigev_signo = SIGUSR1;
	ev.sigev_value.sival_int = 0xabcd;
	if (timer_create(CLOCK_MONOTONIC, &ev, &t) || timer_settime(t, 0, &its, NULL))
		fail("timer: %s", strerror(errno));
	test_ready();
	test_wait_stop();
	before = count;
	for (struct timespec ts = { 0, 50000000 }; nanosleep(&ts, &ts) && errno == EINTR;)
		;
	if (bad_code)
		fail("SIGUSR1 with si_code %d, want SI_TIMER", bad_code == 1000 ? 0 : (int)bad_code);
	if (bad_value)
		fail("SIGUSR1 with another sigev_value");
	if (count - before < 10)
		fail("the timer stopped: %d signals in 50 ms", count - before);
	pass();
}
