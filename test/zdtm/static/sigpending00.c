/*
 * sigpending00 - signals pending at the checkpoint stay pending, with
 * their siginfo.
 *
 * Blocks SIGUSR1, SIGUSR2 and SIGRTMIN; queues to the process SIGUSR1
 * (kill) and SIGRTMIN three times with values 1, 2, 3 (sigqueue), and to
 * its own thread SIGUSR2 (tgkill).  After SIGTERM, sigpending must show
 * all three, and sigtimedwait must return SIGRTMIN with 1, 2, 3 in order,
 * SIGUSR1 from this process, and SIGUSR2 with the si_code this kernel
 * gives tgkill (learnt first with a signal taken at once).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

static void take(const sigset_t *set, int want, int code, int value, pid_t from)
{
	struct timespec zero = { 0, 0 };
	siginfo_t si;
	int sig = sigtimedwait(set, &si, &zero);

	if (sig != want)
		fail("sigtimedwait: got %d (%s), want signal %d", sig, sig < 0 ? strerror(errno) : "", want);
	if (si.si_code != code)
		fail("signal %d: si_code %d, want %d", want, si.si_code, code);
	if (code == SI_QUEUE && si.si_value.sival_int != value)
		fail("signal %d: value %d, want %d", want, si.si_value.sival_int, value);
	if (si.si_pid != from)
		fail("signal %d: si_pid %d, want %d", want, si.si_pid, from);
}

int main(void)
{
	sigset_t set, pending, one;
	pid_t me = getpid();
	struct timespec zero = { 0, 0 };
	siginfo_t si;
	int tkill_code;

	test_init();
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGRTMIN);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		fail("sigprocmask: %s", strerror(errno));
	sigemptyset(&one);
	sigaddset(&one, SIGUSR2);
	syscall(SYS_tgkill, me, syscall(SYS_gettid), SIGUSR2);
	if (sigtimedwait(&one, &si, &zero) != SIGUSR2)
		fail("tgkill to self: %s", strerror(errno));
	tkill_code = si.si_code;
	kill(me, SIGUSR1);
	for (int v = 1; v <= 3; v++) {
		union sigval val = { .sival_int = v };
		if (sigqueue(me, SIGRTMIN, val))
			fail("sigqueue: %s", strerror(errno));
	}
	syscall(SYS_tgkill, me, syscall(SYS_gettid), SIGUSR2);
	test_ready();
	test_wait_stop();

	sigpending(&pending);
	for (int s = 0; s < 3; s++) {
		int sig = s == 0 ? SIGUSR1 : s == 1 ? SIGUSR2 : SIGRTMIN;
		if (!sigismember(&pending, sig))
			fail("signal %d is no longer pending", sig);
	}
	sigemptyset(&one);
	sigaddset(&one, SIGRTMIN);
	for (int v = 1; v <= 3; v++)
		take(&one, SIGRTMIN, SI_QUEUE, v, me);
	sigemptyset(&one);
	sigaddset(&one, SIGUSR1);
	take(&one, SIGUSR1, SI_USER, 0, me);
	sigemptyset(&one);
	sigaddset(&one, SIGUSR2);
	take(&one, SIGUSR2, tkill_code, 0, me);
	pass();
}
