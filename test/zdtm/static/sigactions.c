/*
 * sigactions - signal dispositions, the alternate signal stack and the
 * blocked mask survive C/R.
 *
 * Set up before "ready":
 *   SIGUSR1     handler, SA_RESTART,                       mask {SIGINT}
 *   SIGHUP      handler, SA_SIGINFO,                       mask {SIGQUIT, SIGPIPE}
 *   SIGWINCH    handler, SA_ONSTACK,                       mask {SIGUSR1, SIGRTMIN+4}
 *   SIGALRM     handler, SA_NODEFER,                       mask {}
 *   SIGRTMIN+3  handler, SA_SIGINFO|SA_ONSTACK|SA_RESTART, mask {SIGHUP}
 *   SIGPIPE     SIG_IGN
 *   a 64 KiB sigaltstack, and SIGUSR2 and SIGRTMIN+5 blocked.
 *
 * After SIGTERM: every sigaction() reads back the same handler, flags (the
 * kernel adds SA_RESTORER, which is ignored) and mask; sigaltstack() and
 * the blocked mask are unchanged; and the handlers really behave as set up
 * when the signals are raised: SA_ONSTACK handlers run on the alternate
 * stack, SA_SIGINFO handlers get a siginfo, sa_mask and SA_NODEFER take
 * effect.
 *
 * This test does not wait with test_wait_stop(): that sigsuspend()s and
 * then re-sets the signal mask from a copy in user memory, which would hide
 * a mask the tool failed to restore.  It polls the stop flag with short
 * sleeps instead, never touching the mask.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "zdtm.h"

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif

#define ALTSTACK_SIZE (64 * 1024)
static char altstack[ALTSTACK_SIZE] __attribute__((aligned(64)));

/* What the handlers observed, reset before each round of raise()s. */
static volatile sig_atomic_t calls[_NSIG];
static volatile uintptr_t local_addr[_NSIG];	/* &local in the handler */
static volatile sig_atomic_t on_altstack[_NSIG];	/* SS_ONSTACK seen */
static volatile sig_atomic_t self_blocked[_NSIG];	/* sig blocked in handler */
static volatile sig_atomic_t mask_blocked[_NSIG];	/* its sa_mask[0] blocked */
static volatile sig_atomic_t info_signo[_NSIG], info_code[_NSIG];

#define MAXMASK 3
struct disp {
	int sig;
	const char *name;
	int handler;		/* 0: SIG_IGN, 1: plain handler, 2: SA_SIGINFO */
	int flags;
	int mask[MAXMASK];	/* signals in sa_mask, 0-terminated */
};
static struct disp disps[6];
static int ndisps;

static struct disp *find(int sig)
{
	int i;

	for (i = 0; i < ndisps; i++)
		if (disps[i].sig == sig)
			return &disps[i];
	return NULL;
}

/* Record everything the checks need; only async-signal-safe calls. */
static void record(int sig)
{
	char local;
	stack_t ss;
	sigset_t cur;
	struct disp *d = find(sig);

	calls[sig]++;
	local_addr[sig] = (uintptr_t)&local;
	__asm__ volatile("" : : "r"(&local) : "memory");
	if (sigaltstack(NULL, &ss) == 0)
		on_altstack[sig] = !!(ss.ss_flags & SS_ONSTACK);
	if (sigprocmask(SIG_BLOCK, NULL, &cur) == 0) {
		self_blocked[sig] = sigismember(&cur, sig);
		mask_blocked[sig] = d && d->mask[0] ? sigismember(&cur, d->mask[0]) : -1;
	}
}

static void plain_handler(int sig)
{
	record(sig);
}

static void info_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	info_signo[sig] = si->si_signo;
	info_code[sig] = si->si_code;
	record(sig);
}

static void *handler_of(const struct disp *d)
{
	switch (d->handler) {
	case 0: return (void *)SIG_IGN;
	case 1: return (void *)plain_handler;
	default: return (void *)info_handler;
	}
}

static void add(int sig, const char *name, int handler, int flags,
		int m0, int m1)
{
	struct disp *d = &disps[ndisps++];
	struct sigaction sa;
	int i;

	d->sig = sig;
	d->name = name;
	d->handler = handler;
	d->flags = flags;
	d->mask[0] = m0;
	d->mask[1] = m1;

	memset(&sa, 0, sizeof(sa));
	if (handler == 2)
		sa.sa_sigaction = (void (*)(int, siginfo_t *, void *))handler_of(d);
	else
		sa.sa_handler = (void (*)(int))handler_of(d);
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < MAXMASK && d->mask[i]; i++)
		sigaddset(&sa.sa_mask, d->mask[i]);
	if (sigaction(sig, &sa, NULL))
		fail("sigaction(%s): %s", name, test_strerror(errno));
}

static void check_disp(const struct disp *d)
{
	struct sigaction sa;
	sigset_t want;
	int i, sig;

	memset(&sa, 0, sizeof(sa));
	if (sigaction(d->sig, NULL, &sa))
		fail("sigaction(%s) read: %s", d->name, test_strerror(errno));
	if ((void *)sa.sa_handler != handler_of(d))
		fail("%s: handler is %p, expected %p", d->name,
		     (void *)sa.sa_handler, handler_of(d));
	if ((sa.sa_flags & ~SA_RESTORER) != d->flags)
		fail("%s: sa_flags are %#x (ignoring SA_RESTORER), expected %#x "
		     "(SA_RESTART=%#x SA_SIGINFO=%#x SA_ONSTACK=%#x SA_NODEFER=%#x)",
		     d->name, sa.sa_flags & ~SA_RESTORER, d->flags, SA_RESTART,
		     SA_SIGINFO, SA_ONSTACK, SA_NODEFER);
	sigemptyset(&want);
	for (i = 0; i < MAXMASK && d->mask[i]; i++)
		sigaddset(&want, d->mask[i]);
	for (sig = 1; sig < _NSIG; sig++)
		if (sigismember(&sa.sa_mask, sig) != sigismember(&want, sig))
			fail("%s: sa_mask %s signal %d (%s), expected it %s",
			     d->name,
			     sigismember(&sa.sa_mask, sig) ? "contains" : "lacks",
			     sig, strsignal(sig),
			     sigismember(&want, sig) ? "in the mask" : "not in the mask");
}

static int in_altstack(uintptr_t a)
{
	return a >= (uintptr_t)altstack && a < (uintptr_t)altstack + ALTSTACK_SIZE;
}

/* Raise each handled signal and check the handler saw what it should. */
static void check_delivery(const char *when)
{
	int i;

	for (i = 0; i < ndisps; i++) {
		const struct disp *d = &disps[i];
		int sig = d->sig;

		if (d->handler == 0)
			continue;
		calls[sig] = 0;
		raise(sig);
		if (calls[sig] != 1)
			fail("%s: raise(%s) ran its handler %d times, expected once",
			     when, d->name, (int)calls[sig]);
		if (d->flags & SA_ONSTACK) {
			if (!in_altstack(local_addr[sig]))
				fail("%s: %s handler (SA_ONSTACK) ran with a local at %#lx, "
				     "outside the alternate stack %p-%p", when, d->name,
				     (unsigned long)local_addr[sig], (void *)altstack,
				     (void *)(altstack + ALTSTACK_SIZE));
			if (!on_altstack[sig])
				fail("%s: sigaltstack() in the %s handler lacks SS_ONSTACK",
				     when, d->name);
		} else if (in_altstack(local_addr[sig]) || on_altstack[sig]) {
			fail("%s: %s handler (no SA_ONSTACK) ran on the alternate stack",
			     when, d->name);
		}
		if (d->flags & SA_SIGINFO) {
			if (info_signo[sig] != sig || info_code[sig] != SI_TKILL)
				fail("%s: %s handler got si_signo %d si_code %d, expected "
				     "%d and SI_TKILL (%d)", when, d->name,
				     (int)info_signo[sig], (int)info_code[sig], sig,
				     SI_TKILL);
		}
		if (self_blocked[sig] != !(d->flags & SA_NODEFER))
			fail("%s: in the %s handler the signal itself is %s, expected "
			     "%s (SA_NODEFER %s)", when, d->name,
			     self_blocked[sig] ? "blocked" : "not blocked",
			     (d->flags & SA_NODEFER) ? "not blocked" : "blocked",
			     (d->flags & SA_NODEFER) ? "set" : "not set");
		if (d->mask[0] && mask_blocked[sig] != 1)
			fail("%s: in the %s handler signal %d from its sa_mask is not "
			     "blocked", when, d->name, d->mask[0]);
	}
}

static void check_blocked(const sigset_t *want)
{
	sigset_t cur;
	int sig;

	if (sigprocmask(SIG_BLOCK, NULL, &cur))
		fail("sigprocmask: %s", test_strerror(errno));
	for (sig = 1; sig < _NSIG; sig++)
		if (sigismember(&cur, sig) != sigismember(want, sig))
			fail("blocked mask: signal %d (%s) is %s, expected %s", sig,
			     strsignal(sig),
			     sigismember(&cur, sig) ? "blocked" : "not blocked",
			     sigismember(want, sig) ? "blocked" : "not blocked");
}

int main(void)
{
	stack_t ss;
	sigset_t blocked;
	int i;

	test_init();

	add(SIGUSR1, "SIGUSR1", 1, SA_RESTART, SIGINT, 0);
	add(SIGHUP, "SIGHUP", 2, SA_SIGINFO, SIGQUIT, SIGPIPE);
	add(SIGWINCH, "SIGWINCH", 1, SA_ONSTACK, SIGUSR1, SIGRTMIN + 4);
	add(SIGALRM, "SIGALRM", 1, SA_NODEFER, 0, 0);
	add(SIGRTMIN + 3, "SIGRTMIN+3", 2, SA_SIGINFO | SA_ONSTACK | SA_RESTART,
	    SIGHUP, 0);
	add(SIGPIPE, "SIGPIPE", 0, 0, 0, 0);

	ss.ss_sp = altstack;
	ss.ss_size = ALTSTACK_SIZE;
	ss.ss_flags = 0;
	if (sigaltstack(&ss, NULL))
		fail("sigaltstack: %s", test_strerror(errno));

	sigemptyset(&blocked);
	sigaddset(&blocked, SIGUSR2);
	sigaddset(&blocked, SIGRTMIN + 5);
	if (sigprocmask(SIG_BLOCK, &blocked, NULL))
		fail("sigprocmask: %s", test_strerror(errno));

	/* Sanity-check the test itself before the checkpoint. */
	check_delivery("before checkpoint");

	test_ready();
	while (!test_stopped()) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };	/* 10 ms */

		nanosleep(&ts, NULL);
	}

	for (i = 0; i < ndisps; i++)
		check_disp(&disps[i]);

	memset(&ss, 0, sizeof(ss));
	if (sigaltstack(NULL, &ss))
		fail("sigaltstack read: %s", test_strerror(errno));
	if (ss.ss_sp != altstack || ss.ss_size != ALTSTACK_SIZE || ss.ss_flags != 0)
		fail("sigaltstack is sp=%p size=%zu flags=%#x, expected sp=%p "
		     "size=%d flags=0", ss.ss_sp, ss.ss_size, ss.ss_flags,
		     (void *)altstack, ALTSTACK_SIZE);

	check_blocked(&blocked);
	check_delivery("after SIGTERM");
	check_blocked(&blocked);
	pass();
}
