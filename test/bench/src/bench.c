/* bench.c - shared helpers for amber's benchmark workloads; see bench.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static volatile sig_atomic_t stop_flag;

static void on_sigterm(int sig)
{
	(void)sig;
	stop_flag = 1;
}

void bench_init(void)
{
	struct sigaction sa;

	setvbuf(stdout, NULL, _IOLBF, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigterm;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL))
		fail("sigaction(SIGTERM): %s", strerror(errno));
}

void bench_ready(void)
{
	printf("ready\n");
	fflush(stdout);
}

int bench_stopped(void)
{
	return stop_flag != 0;
}

void bench_wait_stop(void)
{
	sigset_t term, old, wait;

	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &term, &old))
		fail("sigprocmask: %s", strerror(errno));
	wait = old;
	sigdelset(&wait, SIGTERM);
	while (!stop_flag)
		sigsuspend(&wait);
	if (sigprocmask(SIG_SETMASK, &old, NULL))
		fail("sigprocmask: %s", strerror(errno));
}

void pass(void)
{
	printf("PASS\n");
	fflush(stdout);
	exit(0);
}

void fail(const char *fmt, ...)
{
	va_list ap;

	printf("FAIL: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(1);
}

unsigned long arg_ulong(const char *s, const char *what)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v == 0)
		fail("bad %s \"%s\"", what, s);
	return v;
}

/* splitmix64's finaliser, with the low bit set: never zero. */
static uint64_t word(uint64_t seed, uint64_t i)
{
	uint64_t x = seed ^ (i * 0xd1342543de82ef95ULL);

	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return (x ^ (x >> 31)) | 1;
}

void fill_page(void *page, uint64_t seed)
{
	uint64_t *w = page;
	size_t i;

	for (i = 0; i < PG / 8; i++)
		w[i] = word(seed, i);
}

void check_page(const void *page, uint64_t seed, const char *what)
{
	const uint64_t *w = page;
	size_t i;

	for (i = 0; i < PG / 8; i++)
		if (w[i] != word(seed, i))
			fail("%s at %p: word %zu is %#llx, expected %#llx", what,
			     page, i, (unsigned long long)w[i],
			     (unsigned long long)word(seed, i));
}

unsigned long count_pages_maps(unsigned long lo, unsigned long hi,
			       const char *perms)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512], p[5];
	unsigned long start, end, n = 0;

	if (!f)
		fail("open /proc/self/maps: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx %4s", &start, &end, p) != 3)
			fail("cannot parse maps line: %s", line);
		if (end <= lo || start >= hi)
			continue;
		if (start < lo || end > hi || end - start != PG)
			fail("mapping %lx-%lx %s in %lx-%lx is not one page inside it",
			     start, end, p, lo, hi);
		if (!strcmp(p, perms))
			n++;
	}
	fclose(f);
	return n;
}
