/*
 * mem - anonymous memory: MIB MiB in one private anonymous mapping, every
 * page written with a non-zero pattern that depends on its index.
 *
 * Usage: mem MIB.  After SIGTERM every page must hold its pattern.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"

#define SEED 0x6d656d0000000000ULL	/* + page index */

int main(int argc, char **argv)
{
	unsigned long mib, pages, i;
	unsigned char *buf;

	bench_init();
	if (argc != 2)
		fail("usage: mem MIB");
	mib = arg_ulong(argv[1], "size in MiB");
	pages = mib * (1UL << 20) / PG;
	buf = mmap(NULL, pages * PG, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		fail("mmap %lu MiB: %s", mib, strerror(errno));
	for (i = 0; i < pages; i++)
		fill_page(buf + i * PG, SEED + i);

	bench_ready();
	bench_wait_stop();

	for (i = 0; i < pages; i++)
		check_page(buf + i * PG, SEED + i, "page");
	pass();
}
