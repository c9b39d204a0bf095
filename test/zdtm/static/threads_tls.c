/*
 * threads_tls - 8 threads, each with its own thread-local storage and a
 * counter it keeps incrementing, checkpointed while they run.
 *
 * Each worker fills a __thread array with a pattern of its own and a
 * __thread word with a distinct value, records gettid(), pthread_self()
 * and the address of its TLS, and then loops: it increments a counter held
 * in a local (a register), keeps a running sum of it, publishes the counter
 * to a shared array, and naps 100 us every 4096 steps, so a checkpoint
 * catches some threads in user code and some in nanosleep().  The workers
 * block SIGTERM, so the handler runs on the main thread, which sleeps in
 * test_wait_stop().
 *
 * The SIGTERM handler sets an atomic stop flag.  A worker that sees it
 * notes its counter and goes on for another 3 * 4096 steps (proving it runs
 * after the signal, i.e. after the restore), then checks that gettid(),
 * pthread_self() and its TLS address are unchanged, its TLS pattern and
 * word are intact, its running sum matches the counter (register state)
 * and the counter never went below the value published at `ready`.  The
 * main thread joins them (5 s timeout each), checks its own TLS and TID,
 * and that every worker reported success.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define NTHREADS	8
#define SEED		0x7415000000000000ULL	/* + thread index; main: + 99 */
#define TLS_WORDS	64
#define EXTRA_STEPS	(3 * 4096)

static __thread uint64_t tls_pattern[TLS_WORDS];
static __thread uint64_t tls_word;

struct worker {
	int index;
	pthread_t self;			/* pthread_self() as seen by the thread */
	pid_t tid;			/* gettid() before the checkpoint */
	void *tls_addr;			/* &tls_pattern before the checkpoint */
	_Atomic uint64_t count;		/* published counter */
	uint64_t count_at_ready;	/* sampled by main before `ready` */
	char error[256];		/* "" if the worker's checks passed */
};

static struct worker workers[NTHREADS];
static atomic_int started;	/* workers that have set up their state */
static atomic_int stop;		/* set by the SIGTERM handler */

static void stop_hook(void)
{
	atomic_store(&stop, 1);
}

static uint64_t word_for(int index)
{
	return zdtm_mix(SEED + 1000 + index);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct timespec nap = { 0, 100000 };
	uint64_t n = 0, sum = 0, n_at_stop = 0;
	int stopping = 0;
	long off;

	fill_pattern(tls_pattern, sizeof(tls_pattern), SEED + w->index);
	tls_word = word_for(w->index);
	w->tid = gettid();
	w->self = pthread_self();
	w->tls_addr = tls_pattern;
	atomic_fetch_add(&started, 1);

	for (;;) {
		n++;
		sum += n;
		atomic_store_explicit(&w->count, n, memory_order_relaxed);
		if (!stopping && atomic_load_explicit(&stop, memory_order_relaxed)) {
			stopping = 1;
			n_at_stop = n;
		}
		if (stopping && n - n_at_stop >= EXTRA_STEPS)
			break;
		if ((n & 4095) == 0 && nanosleep(&nap, NULL) && errno != EINTR) {
			snprintf(w->error, sizeof(w->error),
				 "nanosleep failed with %s", test_strerror(errno));
			return NULL;
		}
	}

	if (gettid() != w->tid)
		snprintf(w->error, sizeof(w->error),
			 "gettid() is %d, was %d before the checkpoint",
			 gettid(), w->tid);
	else if (!pthread_equal(pthread_self(), w->self))
		snprintf(w->error, sizeof(w->error),
			 "pthread_self() is %#lx, was %#lx (FS base changed?)",
			 (unsigned long)pthread_self(), (unsigned long)w->self);
	else if ((void *)tls_pattern != w->tls_addr)
		snprintf(w->error, sizeof(w->error),
			 "TLS moved: &tls_pattern is %p, was %p",
			 (void *)tls_pattern, w->tls_addr);
	else if ((off = pattern_mismatch(tls_pattern, sizeof(tls_pattern),
					 SEED + w->index)) >= 0)
		snprintf(w->error, sizeof(w->error),
			 "TLS pattern at %p: byte %ld is 0x%02x, expected 0x%02x",
			 (void *)tls_pattern, off,
			 ((unsigned char *)tls_pattern)[off],
			 pattern_byte(off, SEED + w->index));
	else if (tls_word != word_for(w->index))
		snprintf(w->error, sizeof(w->error),
			 "TLS word is %#llx, expected %#llx",
			 (unsigned long long)tls_word,
			 (unsigned long long)word_for(w->index));
	else if (sum != n * (n + 1) / 2)
		snprintf(w->error, sizeof(w->error),
			 "running sum %llu does not match counter %llu "
			 "(expected %llu): register state lost",
			 (unsigned long long)sum, (unsigned long long)n,
			 (unsigned long long)(n * (n + 1) / 2));
	else if (n < w->count_at_ready)
		snprintf(w->error, sizeof(w->error),
			 "counter went back: %llu now, %llu at ready",
			 (unsigned long long)n,
			 (unsigned long long)w->count_at_ready);
	return NULL;
}

int main(void)
{
	pthread_t th[NTHREADS];
	sigset_t term, old;
	struct timespec deadline;
	pid_t main_tid;
	int i, err;

	test_init();
	test_on_stop(stop_hook);

	fill_pattern(tls_pattern, sizeof(tls_pattern), SEED + 99);
	tls_word = word_for(99);
	main_tid = gettid();

	/* Workers inherit a mask with SIGTERM blocked: only main handles it. */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	if (pthread_sigmask(SIG_BLOCK, &term, &old))
		fail("pthread_sigmask: %s", test_strerror(errno));
	for (i = 0; i < NTHREADS; i++) {
		workers[i].index = i;
		err = pthread_create(&th[i], NULL, worker_main, &workers[i]);
		if (err)
			fail("pthread_create %d: %s", i, test_strerror(err));
	}
	if (pthread_sigmask(SIG_SETMASK, &old, NULL))
		fail("pthread_sigmask: %s", test_strerror(errno));

	/* Wait until every worker has set up and counted a bit. */
	for (i = 0; i < 5000; i++) {
		int j, moving = 0;

		if (atomic_load(&started) == NTHREADS)
			for (j = 0; j < NTHREADS; j++)
				moving += atomic_load(&workers[j].count) > 0;
		if (moving == NTHREADS)
			break;
		usleep(1000);
	}
	if (i == 5000)
		fail("workers not all counting after 5 s");
	for (i = 0; i < NTHREADS; i++) {
		workers[i].count_at_ready = atomic_load(&workers[i].count);
		if (workers[i].tid <= 0 || workers[i].tid == main_tid)
			fail("worker %d has a bogus tid %d", i, workers[i].tid);
	}

	test_ready();
	test_wait_stop();

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 5;
	for (i = 0; i < NTHREADS; i++) {
		err = pthread_timedjoin_np(th[i], NULL, &deadline);
		if (err == ETIMEDOUT)
			fail("worker %d (tid %d) did not finish within 5 s of SIGTERM "
			     "(counter %llu, %llu at ready)", i, workers[i].tid,
			     (unsigned long long)atomic_load(&workers[i].count),
			     (unsigned long long)workers[i].count_at_ready);
		if (err)
			fail("pthread_join worker %d: %s", i, test_strerror(err));
	}
	for (i = 0; i < NTHREADS; i++)
		if (workers[i].error[0])
			fail("worker %d (tid %d): %s", i, workers[i].tid,
			     workers[i].error);

	if (gettid() != main_tid)
		fail("main thread: gettid() is %d, was %d", gettid(), main_tid);
	if (gettid() != getpid())
		fail("main thread: gettid() %d != getpid() %d", gettid(), getpid());
	expect_pattern(tls_pattern, sizeof(tls_pattern), SEED + 99,
		       "main thread TLS pattern");
	if (tls_word != word_for(99))
		fail("main thread TLS word is %#llx, expected %#llx",
		     (unsigned long long)tls_word,
		     (unsigned long long)word_for(99));
	pass();
}
