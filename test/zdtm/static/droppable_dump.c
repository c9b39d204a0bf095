/*
 * droppable_dump - the pages of a MAP_DROPPABLE mapping are not kept by a
 * checkpoint (CRIU's maps11): the kernel may drop them at any time, so a
 * restore gives them back as zeroes, as CRIU's does.
 *
 * 64 pages of a MAP_DROPPABLE mapping and 64 of a MAP_PRIVATE one with
 * MADV_WIPEONFORK are written with patterns. A child forked before
 * "ready" waits and must see both zeroed (neither is inherited).
 * After SIGTERM, in the parent, the wipe-on-fork pages must still hold
 * their pattern, and the droppable ones must read zero if the process was
 * restored (the inode of /proc/self/status changed: a new process) and
 * keep their pattern, or zeroes, if not. Both areas are written again to
 * show they still take data.
 * Without MAP_DROPPABLE (kernels before 6.11) the test passes after
 * checking the wipe-on-fork area only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif

#define SIZE (64 * 4096UL)
#define SEED_DROP 11
#define SEED_WIPE 12

static int all_zero(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static ino_t status_ino(void)
{
	struct stat st;

	if (stat("/proc/self/status", &st))
		fail("stat /proc/self/status: %s", strerror(errno));
	return st.st_ino;
}

int main(void)
{
	unsigned char *drop, *wipe;
	int go[2], st;
	pid_t child;
	ino_t before;
	char c;

	test_init();
	drop = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_DROPPABLE | MAP_ANONYMOUS, -1, 0);
	if (drop == MAP_FAILED && errno != EINVAL)
		fail("mmap MAP_DROPPABLE: %s", strerror(errno));
	if (drop == MAP_FAILED)
		drop = NULL;
	wipe = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (wipe == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	if (madvise(wipe, SIZE, MADV_WIPEONFORK))
		fail("MADV_WIPEONFORK: %s", strerror(errno));
	if (drop)
		fill_pattern(drop, SIZE, SEED_DROP);
	fill_pattern(wipe, SIZE, SEED_WIPE);
	if (pipe(go))
		fail("pipe: %s", strerror(errno));
	child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		_exit(!all_zero(wipe, SIZE) || (drop && !all_zero(drop, SIZE)));
	}
	before = status_ino();
	test_ready();
	test_wait_stop();
	if (write(go[1], "g", 1) != 1)
		fail("go: %s", strerror(errno));
	if (waitpid(child, &st, 0) != child)
		fail("waitpid: %s", strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fail("the child saw data it must not inherit (status %#x)", st);
	expect_pattern(wipe, SIZE, SEED_WIPE, "MADV_WIPEONFORK area");
	if (drop && status_ino() != before && !all_zero(drop, SIZE))
		fail("MAP_DROPPABLE area holds data after restore");
	if (drop && pattern_mismatch(drop, SIZE, SEED_DROP) >= 0 && !all_zero(drop, SIZE))
		fail("MAP_DROPPABLE area holds neither its pattern nor zeroes");
	if (drop) {
		fill_pattern(drop, SIZE, SEED_WIPE);
		expect_pattern(drop, SIZE, SEED_WIPE, "MAP_DROPPABLE area written again");
	}
	fill_pattern(wipe, SIZE, SEED_DROP);
	expect_pattern(wipe, SIZE, SEED_DROP, "MADV_WIPEONFORK area written again");
	pass();
}
