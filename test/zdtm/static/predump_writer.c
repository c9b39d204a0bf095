/*
 * predump_writer - a process that keeps writing its memory while it is
 * pre-dumped, then dumped on top of the pre-dump (incremental dump).
 *
 * Memory:
 *  - cold: 32 MiB filled with a pattern before "ready", never written
 *    again: an incremental dump leaves all of it to the pre-dump images;
 *  - hot: 512 pages rewritten all the time, one after another in a
 *    pseudo-random order, each with the pattern of its own generation
 *    (gen[i], bumped once the page is done). A checkpoint may catch a
 *    page half written: the restored process finishes it.
 *
 * After SIGTERM every cold page must hold its pattern and every hot page
 * the pattern of its generation: pages restored from the wrong image of
 * the chain, or from none, show as a mismatch naming the page.
 *
 * Once a file "fork.now" appears in its directory it forks a child that
 * goes on writing its own copy of the hot pages; after SIGTERM it stops
 * the child, which checks its memory the same way, and fails unless the
 * child exits 0.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define PAGE 4096
#define COLD (32 << 20)
#define HOT_PAGES 512
#define WORDS (PAGE / 8)

static uint64_t gen[HOT_PAGES];
static uint64_t *hot;

static uint64_t word(long page, uint64_t g, long w)
{
	return zdtm_mix(((uint64_t)page << 40) ^ (g << 12) ^ (uint64_t)w);
}

static void write_page(long i)
{
	uint64_t g = gen[i] + 1;
	uint64_t *p = hot + i * WORDS;
	long w;

	for (w = 0; w < WORDS; w++) {
		p[w] = word(i, g, w);
		__asm__ volatile("" ::: "memory");
	}
	gen[i] = g;
}

/* Hot page i must hold the pattern of its generation. */
static void check_page(long i)
{
	const uint64_t *p = hot + i * WORDS;
	long w;

	for (w = 0; w < WORDS; w++)
		if (p[w] != word(i, gen[i], w))
			fail("hot page %ld (generation %llu): word %ld is %#llx, want %#llx",
			     i, (unsigned long long)gen[i], w,
			     (unsigned long long)p[w], (unsigned long long)word(i, gen[i], w));
}

int main(void)
{
	struct timespec pause = { 0, 50 * 1000 };
	unsigned char *cold;
	uint64_t n = 0;
	pid_t child = -1;
	int is_child = 0, status;
	long i;

	test_init();
	cold = mmap(NULL, COLD, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	hot = mmap(NULL, HOT_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (cold == MAP_FAILED || hot == MAP_FAILED)
		fail("mmap failed");
	fill_pattern(cold, COLD, 0xc01d);
	for (i = 0; i < HOT_PAGES; i++)
		write_page(i);

	test_ready();
	while (!test_stopped()) {
		write_page((long)(zdtm_mix(n++) % HOT_PAGES));
		if (n % 8 == 0)
			nanosleep(&pause, NULL);
		if (n % 64 == 0 && child < 0 && !is_child && access("fork.now", F_OK) == 0) {
			child = fork();
			if (child < 0)
				fail("fork failed");
			if (child == 0)
				is_child = 1;
		}
	}

	expect_pattern(cold, COLD, 0xc01d, "cold memory");
	for (i = 0; i < HOT_PAGES; i++)
		check_page(i);
	if (is_child)
		_exit(0);
	if (child > 0) {
		kill(child, SIGTERM);
		if (waitpid(child, &status, 0) != child)
			fail("waitpid(%d) failed", child);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail("child %d ended with status %#x", child, status);
	}
	pass();
}
