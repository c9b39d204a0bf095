/*
 * threads - a process with many threads.
 *
 * Usage: threads N.  N threads each set a thread-local value and a stack
 * buffer from their index, then sleep on a condition variable.  After
 * SIGTERM the main thread wakes them; each checks its thread-local value
 * and stack, and the main thread joins them all.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define SEED 0x7468720000000000ULL	/* + thread index */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static unsigned long started;
static int stop;
static __thread unsigned long tls;

static void *worker(void *arg)
{
	unsigned long id = (unsigned long)arg;
	unsigned char stack[PG] __attribute__((aligned(8)));

	tls = ~(SEED + id);
	fill_page(stack, SEED + id);
	pthread_mutex_lock(&mu);
	started++;
	pthread_cond_broadcast(&cv);
	while (!stop)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	if (tls != ~(SEED + id))
		fail("thread %lu: thread-local value %#lx, expected %#llx", id,
		     tls, ~(SEED + id));
	check_page(stack, SEED + id, "thread stack");
	return NULL;
}

/* Start n workers with SIGTERM blocked: only the main thread takes it. */
static pthread_t *start(unsigned long n)
{
	pthread_t *t = calloc(n, sizeof(*t));
	sigset_t term, old;
	unsigned long i;
	int err;

	if (!t)
		fail("out of memory");
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &term, &old);
	for (i = 0; i < n; i++)
		if ((err = pthread_create(&t[i], NULL, worker, (void *)i)))
			fail("pthread_create %lu: %s", i, strerror(err));
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_mutex_lock(&mu);
	while (started < n)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	return t;
}

int main(int argc, char **argv)
{
	unsigned long n, i;
	pthread_t *t;
	int err;

	bench_init();
	if (argc != 2)
		fail("usage: threads N");
	n = arg_ulong(argv[1], "number of threads");
	t = start(n);

	bench_ready();
	bench_wait_stop();

	pthread_mutex_lock(&mu);
	stop = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	for (i = 0; i < n; i++)
		if ((err = pthread_join(t[i], NULL)))
			fail("pthread_join %lu: %s", i, strerror(err));
	pass();
}
