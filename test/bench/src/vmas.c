/*
 * vmas - many one-page anonymous VMAs with alternating protections.
 *
 * Usage: vmas N.  One private anonymous area of N pages is mapped read-write
 * and every page written with its own pattern; then every odd page is made
 * read-only, which splits the area into N one-page VMAs (rw-p, r--p, ...)
 * whose contents a restore must write before setting their final
 * protection.  After SIGTERM: the same N VMAs with the same protections,
 * and every page holds its pattern.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"

#define SEED 0x766d610000000000ULL	/* + page index */

static void check_layout(unsigned char *area, unsigned long n, const char *when)
{
	unsigned long lo = (unsigned long)area, hi = lo + n * PG;
	unsigned long rw = count_pages_maps(lo, hi, "rw-p");
	unsigned long ro = count_pages_maps(lo, hi, "r--p");

	if (rw != (n + 1) / 2 || ro != n / 2)
		fail("%s: %lu rw-p and %lu r--p one-page VMAs, expected %lu and %lu",
		     when, rw, ro, (n + 1) / 2, n / 2);
}

int main(int argc, char **argv)
{
	unsigned long n, i;
	unsigned char *area;

	bench_init();
	if (argc != 2)
		fail("usage: vmas N");
	n = arg_ulong(argv[1], "number of VMAs");
	area = mmap(NULL, n * PG, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		fail("mmap %lu pages: %s", n, strerror(errno));
	for (i = 0; i < n; i++)
		fill_page(area + i * PG, SEED + i);
	for (i = 1; i < n; i += 2)
		if (mprotect(area + i * PG, PG, PROT_READ))
			fail("mprotect page %lu: %s", i, strerror(errno));
	check_layout(area, n, "before checkpoint");

	bench_ready();
	bench_wait_stop();

	check_layout(area, n, "after restore");
	for (i = 0; i < n; i++)
		check_page(area + i * PG, SEED + i, "page");
	pass();
}
