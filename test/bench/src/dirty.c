/*
 * dirty - memory that keeps being written while it is migrated: MIB MiB
 * in one private anonymous mapping, every page written once with the
 * pattern of its index and generation, then random pages rewritten at
 * RATE MiB/s (paced every millisecond), each with the pattern of its next
 * generation.
 *
 * Usage: dirty MIB RATE.  After SIGTERM every page must hold the pattern
 * of the generation it records: a page restored from the wrong round of a
 * pre-copy shows as a mismatch.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "bench.h"

#define SEED 0x6469727479000000ULL

static uint64_t seed_of(unsigned long i, uint32_t gen)
{
	return SEED ^ ((uint64_t)i << 24) ^ gen;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct timespec ms = { 0, 1000 * 1000 };
	unsigned long mib, rate, pages, i, written = 0;
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	unsigned char *buf;
	uint32_t *gen;
	double start;

	bench_init();
	if (argc != 3)
		fail("usage: dirty MIB RATE");
	mib = arg_ulong(argv[1], "size in MiB");
	rate = arg_ulong(argv[2], "MiB/s");
	pages = mib * (1UL << 20) / PG;
	buf = mmap(NULL, pages * PG, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	gen = calloc(pages, sizeof(*gen));
	if (buf == MAP_FAILED || !gen)
		fail("allocate %lu MiB: %s", mib, strerror(errno));
	for (i = 0; i < pages; i++)
		fill_page(buf + i * PG, seed_of(i, 0));

	bench_ready();
	start = now();
	while (!bench_stopped()) {
		unsigned long due = (unsigned long)((now() - start) * rate * (1UL << 20) / PG);

		for (; written < due && !bench_stopped(); written++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			i = x % pages;
			fill_page(buf + i * PG, seed_of(i, gen[i] + 1));
			gen[i]++;
		}
		nanosleep(&ms, NULL);
	}

	for (i = 0; i < pages; i++)
		check_page(buf + i * PG, seed_of(i, gen[i]), "page");
	pass();
}
