/*
 * timer_thread - POSIX timers that signal one thread keep doing so
 * (CRIU's pthread_timers): a glibc SIGEV_THREAD timer, which the kernel
 * sees as SIGEV_THREAD_ID to glibc's helper thread, and a SIGEV_THREAD_ID
 * timer of the test's own aimed at a thread it made.
 *
 * Both fire every 10 ms. The SIGEV_THREAD callback writes to an eventfd;
 * the own thread waits for SIGRTMIN+1 with sigwaitinfo and writes to
 * another. Each has fired before "ready". After SIGTERM both timers keep
 * their 10 ms interval, the own one's signals still come to its thread
 * with its value, and both fire again: the eventfds take new writes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define INTERVAL_NS 10000000
#define OWN_VALUE 4242

static int cb_fd, own_fd;
static timer_t own_timer;
static pid_t own_tid;
static pthread_barrier_t started;

static void callback(union sigval v)
{
	uint64_t one = 1;

	(void)v;
	if (write(cb_fd, &one, sizeof(one)) != sizeof(one))
		_exit(3);
}

/* waiter takes its timer's signals and counts them on own_fd. */
static void *waiter(void *arg)
{
	sigset_t set;
	siginfo_t si;
	uint64_t one = 1;

	(void)arg;
	own_tid = syscall(SYS_gettid);
	pthread_barrier_wait(&started);
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + 1);
	for (;;) {
		if (sigwaitinfo(&set, &si) < 0) {
			if (errno == EINTR)
				continue;
			_exit(4);
		}
		if (si.si_code != SI_TIMER || si.si_value.sival_int != OWN_VALUE)
			_exit(5);
		if (write(own_fd, &one, sizeof(one)) != sizeof(one))
			_exit(6);
	}
	return NULL;
}

static void arm(timer_t t)
{
	struct itimerspec its = {
		.it_interval = {0, INTERVAL_NS},
		.it_value = {0, INTERVAL_NS},
	};

	if (timer_settime(t, 0, &its, NULL))
		fail("timer_settime: %s", strerror(errno));
}

static void check_interval(timer_t t, const char *what)
{
	struct itimerspec its;

	if (timer_gettime(t, &its))
		fail("timer_gettime %s: %s", what, strerror(errno));
	if (its.it_interval.tv_sec || its.it_interval.tv_nsec != INTERVAL_NS)
		fail("%s: interval %lld.%09ld, want 10 ms", what, (long long)its.it_interval.tv_sec,
		     its.it_interval.tv_nsec);
}

/* fired reads the count of fd once, then waits for a new one. */
static void fired(int fd, const char *what)
{
	uint64_t n;

	if (read(fd, &n, sizeof(n)) != sizeof(n))
		fail("%s: read: %s", what, strerror(errno));
	if (read(fd, &n, sizeof(n)) != sizeof(n) || n == 0)
		fail("%s: no new expiry: %s", what, strerror(errno));
}

int main(void)
{
	struct sigevent cb = {0}, own = {0};
	timer_t cb_timer;
	pthread_t th;
	sigset_t set;
	uint64_t n;

	test_init();
	cb_fd = eventfd(0, 0);
	own_fd = eventfd(0, 0);
	if (cb_fd < 0 || own_fd < 0)
		fail("eventfd: %s", strerror(errno));
	/*
	 * Every thread blocks the own timer's signal: only sigwaitinfo takes
	 * it. The waiter blocks SIGTERM too, which is the main thread's.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + 1);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		fail("sigprocmask: %s", strerror(errno));
	sigaddset(&set, SIGTERM);
	pthread_barrier_init(&started, NULL, 2);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL))
		fail("pthread_sigmask");
	if (pthread_create(&th, NULL, waiter, NULL))
		fail("pthread_create");
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	if (pthread_sigmask(SIG_UNBLOCK, &set, NULL))
		fail("pthread_sigmask");
	pthread_barrier_wait(&started);

	cb.sigev_notify = SIGEV_THREAD;
	cb.sigev_notify_function = callback;
	if (timer_create(CLOCK_MONOTONIC, &cb, &cb_timer))
		fail("timer_create SIGEV_THREAD: %s", strerror(errno));
	own.sigev_notify = SIGEV_THREAD_ID;
	own.sigev_signo = SIGRTMIN + 1;
	own.sigev_value.sival_int = OWN_VALUE;
	own._sigev_un._tid = own_tid;
	if (timer_create(CLOCK_MONOTONIC, &own, &own_timer))
		fail("timer_create SIGEV_THREAD_ID: %s", strerror(errno));
	arm(cb_timer);
	arm(own_timer);
	if (read(cb_fd, &n, sizeof(n)) != sizeof(n) || read(own_fd, &n, sizeof(n)) != sizeof(n))
		fail("first expiries: %s", strerror(errno));
	test_ready();
	test_wait_stop();
	check_interval(cb_timer, "SIGEV_THREAD timer");
	check_interval(own_timer, "SIGEV_THREAD_ID timer");
	fired(cb_fd, "SIGEV_THREAD timer");
	fired(own_fd, "SIGEV_THREAD_ID timer");
	pass();
}
