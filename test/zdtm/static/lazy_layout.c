/*
 * lazy_layout - a random layout of memory for a lazy restore, made from a
 * seed (LAYOUT_SEED in the environment, printed): 40 to 120 private
 * anonymous regions of 1 page to 6 MiB with gaps between them, some
 * adjacent and merged by the kernel, a few shared, some read-only or
 * PROT_NONE once written; in each, runs of pages written with a pattern
 * of their own, left untouched, written with zeroes, or dropped
 * (MADV_DONTNEED) before the dump.
 *
 * Once go.now appears in its directory (or on SIGTERM), while the
 * lazy-pages daemon is still copying, it moves a big region below the
 * others (mremap), unmaps one and drops a random run of a third;
 * then it forks, and the parent with three threads and the child each
 * read every page: each must hold what was written there (zeroes where
 * nothing or zeroes were, and in the dropped run), wherever its region
 * is now.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define PG 4096UL
#define MAX_REGIONS 120
#define AREA (768UL << 20)
#define THREADS 4
/* Room below the regions for the one moved: the biggest fits. */
#define SPARE (8UL << 20)

enum { ZERO, WRITTEN };

struct region {
	unsigned char *at;	/* where it is now; NULL once unmapped */
	size_t pages;
	int shared, prot;
	unsigned char *state;	/* per page: ZERO or WRITTEN */
	uint64_t seed;		/* of its pattern: by page index, so it moves with it */
};

static struct region regions[MAX_REGIONS];
static int nregions;
static uint64_t rng;

static uint64_t next(void)
{
	/* xorshift64*: the layout is the seed's alone. */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ULL;
}

static size_t below(size_t n)
{
	return next() % n;
}

/* region_size is mostly small, now and then some MiB. */
static size_t region_pages(void)
{
	switch (below(8)) {
	case 0:
		return 1;
	case 1:
	case 2:
		return 1 + below(16);
	case 3:
	case 4:
	case 5:
		return 16 + below(256);
	case 6:
		return 256 + below(768);
	}
	return 1024 + below(512);
}

static void write_page(struct region *r, size_t i)
{
	fill_pattern(r->at + i * PG, PG, r->seed + i);
}

/* lay_out maps the regions one after another in area, gap or no gap,
 * and writes their pages. */
static void lay_out(unsigned char *area)
{
	unsigned char *at = area + SPARE;
	size_t i;
	int n;

	nregions = 40 + below(MAX_REGIONS - 40 + 1);
	for (n = 0; n < nregions; n++) {
		struct region *r = &regions[n];

		r->pages = region_pages();
		at += below(3) ? below(8) * PG : 0;	/* a third adjacent */
		if (at + r->pages * PG > area + AREA)
			break;
		r->shared = below(10) == 0;
		r->at = mmap(at, r->pages * PG, PROT_READ | PROT_WRITE,
			     (r->shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		must(r->at == at, "mmap a region");
		r->state = calloc(r->pages, 1);
		must(r->state != NULL, "calloc");
		r->seed = next();
		for (i = 0; i < r->pages;) {
			size_t run = 1 + below(i % 7 == 0 ? 300 : 40), j;
			int kind = below(6);

			for (j = i; j < i + run && j < r->pages; j++) {
				switch (kind) {
				case 0: /* untouched */
					break;
				case 1: /* written with zeroes: present, zero */
					memset(r->at + j * PG, 0, PG);
					break;
				default:
					write_page(r, j);
					r->state[j] = WRITTEN;
				}
			}
			i = j;
		}
		/* A dropped run: was written, reads zero now. */
		if (!r->shared && below(4) == 0) {
			size_t s = below(r->pages), len = 1 + below(r->pages - s);

			must(madvise(r->at + s * PG, len * PG, MADV_DONTNEED) == 0, "madvise a run");
			memset(r->state + s, ZERO, len);
		}
		r->prot = PROT_READ | PROT_WRITE;
		if (below(5) == 0)
			r->prot = below(2) ? PROT_READ : PROT_NONE;
		must(mprotect(r->at, r->pages * PG, r->prot) == 0, "mprotect a region");
		at += r->pages * PG;
	}
	nregions = n;
}

/* private_region picks a private region still in place, or -1: one of
 * the highest quarter, which the daemon, copying from the lowest address
 * up, comes to last. */
static int private_region(void)
{
	int k, n = nregions - 1 - below(nregions / 4 + 1);

	for (k = 0; k < nregions; k++, n = (n + nregions - 1) % nregions)
		if (regions[n].at && !regions[n].shared)
			return n;
	return -1;
}

/* region_to_move picks the highest private region of more than 1 MiB
 * (the daemon copies 1 MiB at a time, from the lowest address up: it
 * comes to that one last), or else the biggest private one. */
static int region_to_move(void)
{
	int n, best = -1;

	for (n = nregions - 1; n >= 0; n--)
		if (!regions[n].shared && regions[n].pages > 256)
			return n;
	for (n = 0; n < nregions; n++)
		if (!regions[n].shared && (best < 0 || regions[n].pages > regions[best].pages))
			best = n;
	return best;
}

/* act changes the layout at once after the restore. A big region the
 * daemon has not come to yet moves below all the others: the daemon,
 * which copies the lowest missing pages first, then finds pages far
 * from where they were at the dump, more than one chunk of them. */
static void act(unsigned char *spare)
{
	struct region *r;
	int n;

	if ((n = region_to_move()) >= 0) {
		r = &regions[n];
		r->at = mremap(r->at, r->pages * PG, r->pages * PG, MREMAP_MAYMOVE | MREMAP_FIXED, spare);
		must(r->at == spare, "mremap a region");
	}
	if ((n = private_region()) >= 0 && regions[n].at != spare) {
		r = &regions[n];
		must(munmap(r->at, r->pages * PG) == 0, "munmap a region");
		r->at = NULL;
	}
	if ((n = private_region()) >= 0) {
		size_t s, len;

		r = &regions[n];
		s = below(r->pages);
		len = 1 + below(r->pages - s);
		must(mprotect(r->at, r->pages * PG, PROT_READ | PROT_WRITE) == 0, "mprotect to drop");
		must(madvise(r->at + s * PG, len * PG, MADV_DONTNEED) == 0, "madvise after the restore");
		memset(r->state + s, ZERO, len);
		r->prot = PROT_READ | PROT_WRITE;
	}
}

/* check reads every THREADS-th region from the arg-th. */
static void *check(void *arg)
{
	char what[96];
	size_t i;
	int n;

	for (n = (int)(uintptr_t)arg; n < nregions; n += THREADS) {
		struct region *r = &regions[n];

		if (!r->at)
			continue;
		for (i = 0; i < r->pages; i++) {
			snprintf(what, sizeof(what), "region %d page %zu of %zu", n, i, r->pages);
			if (r->state[i] == WRITTEN)
				expect_pattern(r->at + i * PG, PG, r->seed + i, what);
			else
				expect_zero(r->at + i * PG, PG, what);
		}
	}
	return NULL;
}

static void check_all(void)
{
	pthread_t th[THREADS];
	long i;
	int n;

	/* PROT_NONE regions become readable: the check reads them. */
	for (n = 0; n < nregions; n++)
		if (regions[n].at && !(regions[n].prot & PROT_READ))
			must(mprotect(regions[n].at, regions[n].pages * PG, PROT_READ) == 0, "mprotect to read");
	for (i = 1; i < THREADS; i++)
		must(pthread_create(&th[i], NULL, check, (void *)i) == 0, "pthread_create");
	check(0);
	for (i = 1; i < THREADS; i++)
		pthread_join(th[i], NULL);
}

int main(void)
{
	const char *env = getenv("LAYOUT_SEED");
	unsigned char *area, *spare;
	int status;
	pid_t child, w;

	test_init();
	rng = env ? strtoull(env, NULL, 0) : 1;
	if (!rng)
		rng = 1;
	printf("seed %s\n", env ? env : "1");
	area = mmap(NULL, AREA, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	must(area != MAP_FAILED, "mmap the area");
	spare = area;
	lay_out(area);
	must(munmap(spare, SPARE) == 0, "free the spare room");
	printf("%d regions\n", nregions);

	test_ready();
	while (access("go.now", F_OK) != 0 && !test_stopped())
		usleep(1000);
	act(spare);
	/* A moment in which only the daemon's background copy brings pages
	 * in: the lowest missing now are the moved region's. */
	usleep(20000);
	child = fork();
	must(child >= 0, "fork");
	check_all();
	if (child == 0)
		_exit(0);
	/* SIGTERM, which may come while the child still checks, interrupts
	 * the wait (the handler has no SA_RESTART). */
	while ((w = waitpid(child, &status, 0)) < 0 && errno == EINTR)
		;
	must(w == child, "waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("the child's check failed (status %#x)", status);
	test_wait_stop();
	pass();
}
