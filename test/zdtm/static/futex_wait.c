/*
 * futex_wait - threads checkpointed while blocked on futexes.
 *
 * Thread "cond" waits in pthread_cond_wait() (a private FUTEX_WAIT inside
 * glibc) for a predicate under an error-checking mutex.  Thread "futex"
 * waits in a raw futex(FUTEX_WAIT) syscall -- the shared flavour, no
 * timeout -- while a word is 0.  Both block SIGTERM; `ready` is printed
 * only once /proc shows both threads sleeping in the futex syscall, so the
 * checkpoint catches them there.
 *
 * After SIGTERM the main thread sets the predicate (value 0xC0FFEE) under
 * the mutex and signals the condition, then stores 0xFEEDBEEF in the futex
 * word and does FUTEX_WAKE.  Like real code, both waiters loop while their
 * predicate is false, so a spurious wake-up or EINTR caused by the
 * checkpoint is harmless.  Each must wake within 5 s, see the right value,
 * still have its TID, and the "cond" thread must own the mutex it got back
 * from pthread_cond_wait() (the error-checking unlock compares the owner
 * TID stored in the mutex with the caller's).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define COND_VALUE	0xC0FFEE
#define FUTEX_VALUE	0xFEEDBEEFu

static pthread_mutex_t mutex;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int cond_ready;		/* the predicate, under mutex */
static int cond_value;		/* under mutex */

static _Atomic uint32_t futex_word;

struct waiter {
	const char *name;
	pid_t tid;
	atomic_int started;
	unsigned long wakeups;	/* returns from the wait that found the
				 * predicate still false */
	char error[256];
};

static struct waiter wcond = { .name = "cond" }, wfutex = { .name = "futex" };

static long futex(_Atomic uint32_t *uaddr, int op, uint32_t val)
{
	return syscall(SYS_futex, uaddr, op, val, NULL, NULL, 0);
}

static void *cond_main(void *arg)
{
	struct waiter *w = arg;
	int err, value;

	w->tid = gettid();
	if ((err = pthread_mutex_lock(&mutex))) {
		snprintf(w->error, sizeof(w->error), "pthread_mutex_lock: %s",
			 test_strerror(err));
		return NULL;
	}
	atomic_store(&w->started, 1);
	while (!cond_ready) {
		err = pthread_cond_wait(&cond, &mutex);
		if (err) {
			snprintf(w->error, sizeof(w->error),
				 "pthread_cond_wait: %s", test_strerror(err));
			return NULL;
		}
		if (!cond_ready)
			w->wakeups++;
	}
	value = cond_value;
	err = pthread_mutex_unlock(&mutex);
	if (err)
		snprintf(w->error, sizeof(w->error),
			 "pthread_mutex_unlock after pthread_cond_wait: %s "
			 "(mutex not owned by this thread's TID?)",
			 test_strerror(err));
	else if (value != COND_VALUE)
		snprintf(w->error, sizeof(w->error),
			 "woke with value %#x, expected %#x", value, COND_VALUE);
	else if (gettid() != w->tid)
		snprintf(w->error, sizeof(w->error),
			 "gettid() is %d, was %d", gettid(), w->tid);
	return NULL;
}

static void *futex_main(void *arg)
{
	struct waiter *w = arg;
	uint32_t v;

	w->tid = gettid();
	atomic_store(&w->started, 1);
	while ((v = atomic_load(&futex_word)) == 0) {
		if (futex(&futex_word, FUTEX_WAIT, 0) == 0) {
			if (atomic_load(&futex_word) == 0)
				w->wakeups++;
			continue;
		}
		if (errno == EAGAIN || errno == EINTR) {
			if (atomic_load(&futex_word) == 0)
				w->wakeups++;
			continue;
		}
		snprintf(w->error, sizeof(w->error), "FUTEX_WAIT: %s",
			 test_strerror(errno));
		return NULL;
	}
	if (v != FUTEX_VALUE)
		snprintf(w->error, sizeof(w->error),
			 "woke with futex word %#x, expected %#x", v, FUTEX_VALUE);
	else if (gettid() != w->tid)
		snprintf(w->error, sizeof(w->error),
			 "gettid() is %d, was %d", gettid(), w->tid);
	return NULL;
}

/*
 * What /proc/self/task/TID/syscall says: the syscall number the thread is
 * blocked in, -1 if running, -2 if unreadable.
 */
static long blocked_in(pid_t tid, char *buf, size_t len)
{
	char path[64];
	FILE *f;
	long nr;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
	f = fopen(path, "r");
	if (!f) {
		snprintf(buf, len, "%s: %s", path, strerror(errno));
		return -2;
	}
	if (!fgets(buf, len, f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
	if (sscanf(buf, "%ld", &nr) != 1)
		return -1;
	return nr;
}

static void join(pthread_t th, struct waiter *w, const struct timespec *deadline)
{
	char where[256];
	int err = pthread_timedjoin_np(th, NULL, deadline);

	if (err == ETIMEDOUT) {
		blocked_in(w->tid, where, sizeof(where));
		fail("thread \"%s\" (tid %d) not woken within 5 s of the wake-up "
		     "(/proc syscall: %s)", w->name, w->tid, where);
	}
	if (err)
		fail("pthread_join \"%s\": %s", w->name, test_strerror(err));
	if (w->error[0])
		fail("thread \"%s\" (tid %d): %s", w->name, w->tid, w->error);
}

int main(void)
{
	pthread_mutexattr_t ma;
	pthread_t tc, tf;
	sigset_t term, old;
	struct timespec deadline;
	char buf[256];
	long nwoken;
	int i, err;

	test_init();

	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
	pthread_mutex_init(&mutex, &ma);

	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	if (pthread_sigmask(SIG_BLOCK, &term, &old))
		fail("pthread_sigmask: %s", test_strerror(errno));
	if ((err = pthread_create(&tc, NULL, cond_main, &wcond)) ||
	    (err = pthread_create(&tf, NULL, futex_main, &wfutex)))
		fail("pthread_create: %s", test_strerror(err));
	if (pthread_sigmask(SIG_SETMASK, &old, NULL))
		fail("pthread_sigmask: %s", test_strerror(errno));

	/* Ready only once both sleep in futex(). */
	for (i = 0; i < 5000; i++) {
		if (atomic_load(&wcond.started) && atomic_load(&wfutex.started) &&
		    blocked_in(wcond.tid, buf, sizeof(buf)) == SYS_futex &&
		    blocked_in(wfutex.tid, buf, sizeof(buf)) == SYS_futex)
			break;
		usleep(1000);
	}
	if (i == 5000)
		fail("threads not both blocked in futex() after 5 s");
	if (wcond.error[0] || wfutex.error[0])
		fail("setup: %s%s", wcond.error, wfutex.error);

	test_ready();
	test_wait_stop();

	/* Wake "cond": set the predicate under the mutex, then signal. */
	if ((err = pthread_mutex_lock(&mutex)))
		fail("main: pthread_mutex_lock: %s", test_strerror(err));
	cond_value = COND_VALUE;
	cond_ready = 1;
	if ((err = pthread_cond_signal(&cond)))
		fail("main: pthread_cond_signal: %s", test_strerror(err));
	if ((err = pthread_mutex_unlock(&mutex)))
		fail("main: pthread_mutex_unlock: %s", test_strerror(err));

	/* Wake "futex": store the value, then FUTEX_WAKE. */
	atomic_store(&futex_word, FUTEX_VALUE);
	nwoken = futex(&futex_word, FUTEX_WAKE, INT_MAX);
	if (nwoken < 0)
		fail("main: FUTEX_WAKE: %s", test_strerror(errno));

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 5;
	join(tc, &wcond, &deadline);
	join(tf, &wfutex, &deadline);
	pass();
}
