/*
 * threads100 - 100 sleeping threads, each owning a slice of a shared array.
 *
 * Thread i fills slice i (4 KiB) of a shared array with a pattern of its
 * own and records gettid().  Even threads then sleep in nanosleep(100 ms)
 * loops until an atomic stop flag is set; odd threads wait in
 * pthread_cond_wait() on one shared condition until the same flag is set
 * under the mutex.  All workers block SIGTERM; the main thread sleeps in
 * test_wait_stop().
 *
 * After SIGTERM the main thread first checks that /proc/self/task lists
 * exactly its own TID and the 100 recorded ones, then sets the flag,
 * broadcasts, and joins every thread (5 s in all).  Each thread checks that
 * gettid() is unchanged and its slice intact (nanosleep may only fail with
 * EINTR); the main thread checks every slice again at the end.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define NTHREADS	100
#define SLICE		4096
#define SEED		0x7100000000000000ULL	/* + thread index */

static unsigned char array[NTHREADS][SLICE] __attribute__((aligned(4096)));

struct worker {
	int index;
	pid_t tid;
	char error[256];
};

static struct worker workers[NTHREADS];
static atomic_int started;
static atomic_int stop;
static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct timespec ts = { 0, 100 * 1000 * 1000 };
	long off;
	int err;

	fill_pattern(array[w->index], SLICE, SEED + w->index);
	w->tid = gettid();
	atomic_fetch_add(&started, 1);

	if (w->index % 2 == 0) {
		while (!atomic_load(&stop))
			if (nanosleep(&ts, NULL) && errno != EINTR) {
				snprintf(w->error, sizeof(w->error),
					 "nanosleep: %s", test_strerror(errno));
				return NULL;
			}
	} else {
		if ((err = pthread_mutex_lock(&mutex))) {
			snprintf(w->error, sizeof(w->error),
				 "pthread_mutex_lock: %s", test_strerror(err));
			return NULL;
		}
		while (!atomic_load(&stop))
			if ((err = pthread_cond_wait(&cond, &mutex))) {
				snprintf(w->error, sizeof(w->error),
					 "pthread_cond_wait: %s", test_strerror(err));
				return NULL;
			}
		if ((err = pthread_mutex_unlock(&mutex))) {
			snprintf(w->error, sizeof(w->error),
				 "pthread_mutex_unlock: %s", test_strerror(err));
			return NULL;
		}
	}

	if (gettid() != w->tid)
		snprintf(w->error, sizeof(w->error), "gettid() is %d, was %d",
			 gettid(), w->tid);
	else if ((off = pattern_mismatch(array[w->index], SLICE,
					 SEED + w->index)) >= 0)
		snprintf(w->error, sizeof(w->error),
			 "slice at %p: byte %ld is 0x%02x, expected 0x%02x",
			 (void *)array[w->index], off, array[w->index][off],
			 pattern_byte(off, SEED + w->index));
	return NULL;
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

/* Compare /proc/self/task with the main TID plus the recorded ones. */
static void check_tasks(pid_t main_tid)
{
	pid_t want[NTHREADS + 1], got[NTHREADS + 16];
	struct dirent *e;
	DIR *d;
	int i, n = 0;

	for (i = 0; i < NTHREADS; i++)
		want[i] = workers[i].tid;
	want[NTHREADS] = main_tid;
	qsort(want, NTHREADS + 1, sizeof(pid_t), cmp_pid);

	d = opendir("/proc/self/task");
	if (!d)
		fail("opendir /proc/self/task: %s", test_strerror(errno));
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (n == NTHREADS + 16)
			fail("more than %d entries in /proc/self/task", n);
		got[n++] = atoi(e->d_name);
	}
	closedir(d);
	qsort(got, n, sizeof(pid_t), cmp_pid);

	if (n != NTHREADS + 1)
		fail("/proc/self/task has %d threads, expected %d", n, NTHREADS + 1);
	for (i = 0; i < n; i++)
		if (got[i] != want[i])
			fail("/proc/self/task has tid %d where %d was expected "
			     "(sorted position %d)", got[i], want[i], i);
}

int main(void)
{
	static pthread_t th[NTHREADS];
	pthread_attr_t attr;
	struct timespec deadline;
	sigset_t term, old;
	pid_t main_tid;
	char what[64];
	int i, err;

	test_init();
	main_tid = gettid();

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	if (pthread_sigmask(SIG_BLOCK, &term, &old))
		fail("pthread_sigmask: %s", test_strerror(errno));
	for (i = 0; i < NTHREADS; i++) {
		workers[i].index = i;
		err = pthread_create(&th[i], &attr, worker_main, &workers[i]);
		if (err)
			fail("pthread_create %d: %s", i, test_strerror(err));
	}
	if (pthread_sigmask(SIG_SETMASK, &old, NULL))
		fail("pthread_sigmask: %s", test_strerror(errno));

	for (i = 0; i < 5000 && atomic_load(&started) < NTHREADS; i++)
		usleep(1000);
	if (atomic_load(&started) < NTHREADS)
		fail("only %d of %d threads started within 5 s",
		     atomic_load(&started), NTHREADS);
	check_tasks(main_tid);
	/* Let the cond waiters get to pthread_cond_wait(). */
	usleep(100 * 1000);

	test_ready();
	test_wait_stop();

	check_tasks(main_tid);

	pthread_mutex_lock(&mutex);
	atomic_store(&stop, 1);
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&mutex);

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 5;
	for (i = 0; i < NTHREADS; i++) {
		err = pthread_timedjoin_np(th[i], NULL, &deadline);
		if (err == ETIMEDOUT)
			fail("thread %d (tid %d, %s) did not finish within 5 s of "
			     "SIGTERM", i, workers[i].tid,
			     i % 2 ? "cond wait" : "nanosleep");
		if (err)
			fail("pthread_join %d: %s", i, test_strerror(err));
		if (workers[i].error[0])
			fail("thread %d (tid %d, %s): %s", i, workers[i].tid,
			     i % 2 ? "cond wait" : "nanosleep", workers[i].error);
	}
	for (i = 0; i < NTHREADS; i++) {
		snprintf(what, sizeof(what), "slice of thread %d", i);
		expect_pattern(array[i], SLICE, SEED + i, what);
	}
	if (gettid() != main_tid)
		fail("main thread: gettid() is %d, was %d", gettid(), main_tid);
	pass();
}
