/*
 * lazy_mem - private anonymous memory for a lazy restore: 64 MiB
 * (LAZY_MIB in the environment to change it) of patterned pages with a
 * MiB never written, a read-only MiB, and three regions that
 * the program moves (mremap), unmaps and drops (MADV_DONTNEED, 2 MiB,
 * whose address it prints) as soon as it runs again, before the
 * lazy-pages daemon can have brought them in.
 *
 * Once a file go.now appears in its directory (or on SIGTERM) it moves,
 * unmaps and drops, then four threads read all the memory at once, each
 * every fourth MiB: every page must hold its pattern, the
 * MiB never written and the dropped region zeroes, the moved region its
 * pattern at its new address. It then waits for SIGTERM to pass.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "zdtm.h"

#define MIB (1UL << 20)
#define THREADS 4

static unsigned char *big, *ro, *moved, *gone, *dropped;
static size_t size, hole;

/* check reads its share of big: every THREADS-th MiB from the arg-th. */
static void *check(void *arg)
{
	size_t off;

	for (off = (uintptr_t)arg * MIB; off < size; off += THREADS * MIB) {
		size_t len = size - off < MIB ? size - off : MIB;

		if (off == hole)
			expect_zero(big + off, len, "the MiB never written");
		else
			expect_pattern(big + off, len, 0xb16 + off, "memory");
	}
	return NULL;
}

int main(void)
{
	const char *env = getenv("LAZY_MIB");
	pthread_t th[THREADS];
	unsigned char *to;
	size_t off;
	long i;

	test_init();
	size = (env ? strtoul(env, NULL, 10) : 64) * MIB;
	hole = size / 2 & ~(MIB - 1);
	/* Mapped top down: the daemon, which copies in the background from
	 * the lowest address up, comes to the regions moved, unmapped and
	 * dropped last. Room to move to is reserved now. */
	to = mmap(NULL, 4 * MIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dropped = mmap(NULL, 2 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	gone = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	moved = mmap(NULL, 4 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ro = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	big = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (big == MAP_FAILED || ro == MAP_FAILED || moved == MAP_FAILED || gone == MAP_FAILED ||
	    dropped == MAP_FAILED || to == MAP_FAILED)
		fail("mmap failed");
	/* One pattern per MiB, seeded by its offset, so a page in the wrong
	 * place shows. */
	for (off = 0; off < size; off += MIB) {
		size_t len = size - off < MIB ? size - off : MIB;

		if (off != hole)
			fill_pattern(big + off, len, 0xb16 + off);
	}
	fill_pattern(ro, MIB, 0x20);
	if (mprotect(ro, MIB, PROT_READ))
		fail("mprotect failed");
	fill_pattern(moved, 4 * MIB, 0x30e);
	fill_pattern(gone, MIB, 0x90e);
	fill_pattern(dropped, 2 * MIB, 0xd20);
	printf("dropped at %p\n", (void *)dropped);
	fflush(stdout);

	test_ready();
	/* The test makes go.now before the restore: the restored process
	 * finds it at once, before the daemon brought much in. */
	while (access("go.now", F_OK) != 0 && !test_stopped())
		usleep(1000);

	if (mremap(moved, 4 * MIB, 4 * MIB, MREMAP_MAYMOVE | MREMAP_FIXED, to) != to)
		fail("mremap failed");
	if (munmap(gone, MIB))
		fail("munmap failed");
	if (madvise(dropped, 2 * MIB, MADV_DONTNEED))
		fail("madvise failed");
	for (i = 0; i < THREADS; i++)
		if (pthread_create(&th[i], NULL, check, (void *)i))
			fail("pthread_create failed");
	for (i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	expect_pattern(to, 4 * MIB, 0x30e, "the moved region");
	expect_zero(dropped, 2 * MIB, "the dropped region");
	expect_pattern(ro, MIB, 0x20, "read-only memory");
	/* The unmapped region is mapped again, empty. */
	if (mmap(gone, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != gone)
		fail("mmap again failed");
	expect_zero(gone, MIB, "the region unmapped and mapped again");
	test_wait_stop();
	pass();
}
