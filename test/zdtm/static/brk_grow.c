/*
 * brk_grow - the program break (heap end) and the brk area survive C/R.
 *
 * Before "ready" the heap is grown with sbrk() several times, by page-sized
 * and odd amounts, and each piece is filled with a pattern.  After SIGTERM:
 *  - the kernel's break (brk(0) syscall) and glibc's cached one (sbrk(0))
 *    are unchanged, and so is start_brk (/proc/self/stat field 47);
 *  - every piece still holds its pattern;
 *  - the heap can still grow: sbrk(1 MiB) returns the old break, the new
 *    area is writable and readable, and old contents are intact;
 *  - it can shrink back again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

static const long incs[] = { 64 << 10, 1 << 20, 3 * 4096 + 100, (200 << 10) + 13 };
#define NINC (sizeof(incs) / sizeof(incs[0]))
static unsigned char *piece[NINC];
#define SEED 0xb4c0000ULL	/* + piece index */
#define GROW (1 << 20)

/* The kernel's current break, bypassing glibc's cache. */
static uintptr_t kernel_brk(void)
{
	return (uintptr_t)syscall(SYS_brk, 0);
}

/* start_brk: field 47 of /proc/self/stat (read without malloc). */
static unsigned long start_brk(void)
{
	char buf[4096], *p;
	int fd, field;
	ssize_t n;

	fd = open("/proc/self/stat", O_RDONLY);
	if (fd < 0)
		fail("open /proc/self/stat: %s", test_strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		fail("read /proc/self/stat failed");
	buf[n] = '\0';
	p = strrchr(buf, ')');	/* field 2 (comm) may contain spaces */
	if (!p)
		fail("cannot parse /proc/self/stat");
	for (field = 2; field < 47 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p)
		fail("/proc/self/stat has fewer than 47 fields");
	return strtoul(p + 1, NULL, 10);
}

static void check_pieces(const char *when)
{
	char what[64];
	size_t i;

	for (i = 0; i < NINC; i++) {
		snprintf(what, sizeof(what), "%s: sbrk(%ld) piece %zu", when,
			 incs[i], i);
		expect_pattern(piece[i], incs[i], SEED + i, what);
	}
}

int main(void)
{
	unsigned long sbrk_start, sbrk_now;
	uintptr_t brk_before, brk_now;
	unsigned char *p;
	size_t i;

	test_init();
	sbrk_start = start_brk();

	for (i = 0; i < NINC; i++) {
		piece[i] = sbrk(incs[i]);
		if (piece[i] == (void *)-1)
			fail("sbrk(%ld): %s", incs[i], test_strerror(errno));
		fill_pattern(piece[i], incs[i], SEED + i);
	}
	if (sbrk_start > (uintptr_t)piece[0])
		fail("test setup: start_brk %#lx is above the first sbrk piece %p",
		     sbrk_start, (void *)piece[0]);

	test_ready();
	/* Recorded after printf(), which may itself have called malloc. */
	brk_before = kernel_brk();
	if ((uintptr_t)sbrk(0) != brk_before)
		fail("test setup: sbrk(0) %p != brk syscall %#lx", sbrk(0),
		     (unsigned long)brk_before);
	test_wait_stop();

	brk_now = kernel_brk();
	if (brk_now != brk_before)
		fail("kernel program break is %#lx, expected %#lx",
		     (unsigned long)brk_now, (unsigned long)brk_before);
	if ((uintptr_t)sbrk(0) != brk_before)
		fail("sbrk(0) is %p, expected %#lx", sbrk(0),
		     (unsigned long)brk_before);
	sbrk_now = start_brk();
	if (sbrk_now != sbrk_start)
		fail("start_brk is %#lx, expected %#lx", sbrk_now, sbrk_start);
	check_pieces("after SIGTERM");

	/* Grow by 1 MiB, use the new memory. */
	p = sbrk(GROW);
	if (p == (void *)-1)
		fail("sbrk(%d) after restore: %s", GROW, test_strerror(errno));
	if ((uintptr_t)p != brk_before)
		fail("sbrk(%d) returned %p, expected the old break %#lx", GROW,
		     (void *)p, (unsigned long)brk_before);
	if (kernel_brk() != brk_before + GROW)
		fail("kernel break is %#lx after sbrk(%d), expected %#lx",
		     (unsigned long)kernel_brk(), GROW,
		     (unsigned long)(brk_before + GROW));
	fill_pattern(p, GROW, SEED + 100);
	expect_pattern(p, GROW, SEED + 100, "memory from sbrk after restore");
	check_pieces("after growing");

	/* And shrink back. */
	if (sbrk(-GROW) == (void *)-1 || kernel_brk() != brk_before)
		fail("shrinking the heap by %d did not restore the break to %#lx "
		     "(now %#lx)", GROW, (unsigned long)brk_before,
		     (unsigned long)kernel_brk());
	check_pieces("after shrinking");
	pass();
}
