/*
 * sigpending01 - pending signals of a process with two threads keep
 * their order and their thread (CRIU's sigpending).
 *
 * Both threads block every signal (the other thread SIGTERM too).  Queued with
 * rt_sigqueueinfo / rt_tgsigqueueinfo and made-up si_codes: three
 * SIGRTMAX to the process (values 1, 2, 3), two SIGRTMIN to the main
 * thread (10, 11) and two SIGRTMIN to the other thread (20, 21).  After
 * SIGTERM each thread takes its own with sigtimedwait, in order, and the
 * main thread the process's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

static pid_t other_tid;
static int go[2], done[2];

/* block_all blocks every signal, and SIGTERM too unless but_term. */
static void block_all(int but_term)
{
	sigset_t all;

	sigfillset(&all);
	if (but_term)
		sigdelset(&all, SIGTERM);
	pthread_sigmask(SIG_SETMASK, &all, NULL);
}

static int queue(int sig, pid_t tid, int code, int value)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	si.si_signo = sig;
	si.si_code = code;
	si.si_pid = getpid();
	si.si_uid = getuid();
	si.si_value.sival_int = value;
	if (tid)
		return syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, sig, &si);
	return syscall(SYS_rt_sigqueueinfo, getpid(), sig, &si);
}

/* take returns "" or what is wrong with the next signal of set. */
static const char *take(int sig, int code, int value)
{
	static char why[128];
	struct timespec zero = { 0, 0 };
	sigset_t set;
	siginfo_t si;
	int got;

	sigemptyset(&set);
	sigaddset(&set, sig);
	got = sigtimedwait(&set, &si, &zero);
	if (got != sig)
		snprintf(why, sizeof(why), "signal %d: got %d (%s)", sig, got, got < 0 ? strerror(errno) : "");
	else if (si.si_code != code || si.si_value.sival_int != value)
		snprintf(why, sizeof(why), "signal %d: code %d value %d, want %d and %d", sig, si.si_code, si.si_value.sival_int, code, value);
	else
		return "";
	return why;
}

static void *other(void *arg)
{
	const char *why = "";
	char c;

	(void)arg;
	other_tid = syscall(SYS_gettid);
	if (write(done[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
		return NULL;
	if (!*(why = take(SIGRTMIN, -20, 20)))
		why = take(SIGRTMIN, -21, 21);
	if (!*why)
		why = "ok";
	if (write(done[1], why, strlen(why) + 1) < 0)
		return NULL;
	return NULL;
}

int main(void)
{
	char c, why[160];
	pthread_t th;
	int i;
	const char *w;

	test_init();
	/* The other thread starts with SIGTERM blocked, so that it goes to
	 * the main thread, which waits for it. */
	block_all(0);
	if (pipe(go) || pipe(done))
		fail("pipe: %s", strerror(errno));
	if (pthread_create(&th, NULL, other, NULL))
		fail("pthread_create");
	block_all(1);
	if (read(done[0], &c, 1) != 1)
		fail("thread did not start");
	for (i = 1; i <= 3; i++)
		if (queue(SIGRTMAX, 0, -i, i))
			fail("rt_sigqueueinfo: %s", strerror(errno));
	if (queue(SIGRTMIN, getpid(), -10, 10) || queue(SIGRTMIN, getpid(), -11, 11) ||
	    queue(SIGRTMIN, other_tid, -20, 20) || queue(SIGRTMIN, other_tid, -21, 21))
		fail("rt_tgsigqueueinfo: %s", strerror(errno));
	test_ready();
	test_wait_stop();
	for (i = 1; i <= 3; i++)
		if (*(w = take(SIGRTMAX, -i, i)))
			fail("process's signal %d: %s", i, w);
	if (*(w = take(SIGRTMIN, -10, 10)) || *(w = take(SIGRTMIN, -11, 11)))
		fail("main thread's: %s", w);
	if (write(go[1], "g", 1) != 1)
		fail("write: %s", strerror(errno));
	for (i = 0; i < (int)sizeof(why) - 1; i++)
		if (read(done[0], &why[i], 1) != 1 || !why[i])
			break;
	why[i] = 0;
	pthread_join(th, NULL);
	if (strcmp(why, "ok"))
		fail("other thread's: %s", why);
	pass();
}
