/*
 * mprotect - protections of anonymous mappings, and data in pages that are
 * no longer writable (or readable), survive C/R.
 *
 * Areas (4 pages each, separated by one-page holes so they cannot merge):
 *   ro_zero       PROT_READ, never written                      r--p
 *   rw            PROT_READ|PROT_WRITE, written                 rw-p
 *   rx            written (a tiny function + pattern), then
 *                 mprotect(PROT_READ|PROT_EXEC)                 r-xp
 *   none_zero     PROT_NONE, never written                      ---p
 *   none_written  written, then mprotect(PROT_NONE)             ---p
 *   ro_written    written, then mprotect(PROT_READ)             r--p
 *   split         written, then pages 1-2 mprotect(PROT_READ)   rw-p r--p rw-p
 *
 * The /proc/self/maps lines for these areas (address range and perms) are
 * recorded before "ready" and must be identical after SIGTERM.  Then the
 * PROT_NONE areas are made readable and all contents are checked, and the
 * function in the r-x area is called.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "zdtm.h"

#define PG		4096UL
#define AREA_PAGES	4UL
#define AREA_SIZE	(AREA_PAGES * PG)
#define SEED		0x3e07ec7ULL	/* + area index */

enum { RO_ZERO, RW, RX, NONE_ZERO, NONE_WRITTEN, RO_WRITTEN, SPLIT, NAREAS };
static const char *names[NAREAS] = {
	"ro_zero", "rw", "rx", "none_zero", "none_written", "ro_written", "split",
};

/* mov $42, %eax; ret */
static const unsigned char code[] = { 0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3 };

static unsigned char *region;	/* NAREAS slots of AREA_SIZE + one hole page */

static unsigned char *area(int a)
{
	return region + a * (AREA_SIZE + PG);
}

struct line {
	unsigned long start, end;
	char perms[5];
};
#define MAXLINES 16
static struct line recorded[MAXLINES];
static int nrecorded;

/* The maps lines overlapping our region. */
static int snapshot(struct line *out)
{
	unsigned long lo = (unsigned long)region;
	unsigned long hi = lo + NAREAS * (AREA_SIZE + PG);
	struct vma *v;
	int n, i, k = 0;

	n = read_maps(&v);
	for (i = 0; i < n; i++) {
		if (v[i].end <= lo || v[i].start >= hi)
			continue;
		if (k == MAXLINES)
			fail("more than %d mappings in the test region", MAXLINES);
		out[k].start = v[i].start;
		out[k].end = v[i].end;
		memcpy(out[k].perms, v[i].perms, sizeof(out[k].perms));
		k++;
	}
	free(v);
	return k;
}

static void expect_line(int *k, unsigned long start, unsigned long len,
			const char *perms)
{
	const struct line *l = &recorded[*k];

	if (*k >= nrecorded || l->start != start || l->end != start + len ||
	    strcmp(l->perms, perms))
		fail("test setup: maps line %d is %lx-%lx %s, expected %lx-%lx %s",
		     *k, *k < nrecorded ? l->start : 0, *k < nrecorded ? l->end : 0,
		     *k < nrecorded ? l->perms : "(none)", start, start + len, perms);
	(*k)++;
}

static void map_area(int a, int prot)
{
	if (mmap(area(a), AREA_SIZE, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
		 -1, 0) == MAP_FAILED)
		fail("mmap %s: %s", names[a], test_strerror(errno));
}

static void protect(void *addr, size_t len, int prot, const char *name)
{
	if (mprotect(addr, len, prot))
		fail("mprotect %s: %s", name, test_strerror(errno));
}

int main(void)
{
	const int rw = PROT_READ | PROT_WRITE;
	struct line now[MAXLINES];
	int a, k, nnow;

	test_init();

	region = mmap(NULL, NAREAS * (AREA_SIZE + PG), PROT_NONE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		fail("reserve region: %s", test_strerror(errno));
	if (munmap(region, NAREAS * (AREA_SIZE + PG)))
		fail("munmap: %s", test_strerror(errno));

	map_area(RO_ZERO, PROT_READ);
	map_area(RW, rw);
	map_area(RX, rw);
	map_area(NONE_ZERO, PROT_NONE);
	map_area(NONE_WRITTEN, rw);
	map_area(RO_WRITTEN, rw);
	map_area(SPLIT, rw);
	for (a = RW; a < NAREAS; a++)
		if (a != NONE_ZERO)
			fill_pattern(area(a), AREA_SIZE, SEED + a);
	memcpy(area(RX), code, sizeof(code));
	protect(area(RX), AREA_SIZE, PROT_READ | PROT_EXEC, "rx");
	protect(area(NONE_WRITTEN), AREA_SIZE, PROT_NONE, "none_written");
	protect(area(RO_WRITTEN), AREA_SIZE, PROT_READ, "ro_written");
	protect(area(SPLIT) + PG, 2 * PG, PROT_READ, "split");

	/* Record the maps lines, and sanity-check them against the plan. */
	nrecorded = snapshot(recorded);
	k = 0;
	expect_line(&k, (unsigned long)area(RO_ZERO), AREA_SIZE, "r--p");
	expect_line(&k, (unsigned long)area(RW), AREA_SIZE, "rw-p");
	expect_line(&k, (unsigned long)area(RX), AREA_SIZE, "r-xp");
	expect_line(&k, (unsigned long)area(NONE_ZERO), AREA_SIZE, "---p");
	expect_line(&k, (unsigned long)area(NONE_WRITTEN), AREA_SIZE, "---p");
	expect_line(&k, (unsigned long)area(RO_WRITTEN), AREA_SIZE, "r--p");
	expect_line(&k, (unsigned long)area(SPLIT), PG, "rw-p");
	expect_line(&k, (unsigned long)area(SPLIT) + PG, 2 * PG, "r--p");
	expect_line(&k, (unsigned long)area(SPLIT) + 3 * PG, PG, "rw-p");
	if (k != nrecorded)
		fail("test setup: %d maps lines in the region, expected %d",
		     nrecorded, k);

	test_ready();
	test_wait_stop();

	/* 1. The mappings: same ranges, same perms, nothing added/removed. */
	nnow = snapshot(now);
	for (k = 0; k < nrecorded || k < nnow; k++) {
		if (k >= nnow)
			fail("maps line %lx-%lx %s is missing after restore",
			     recorded[k].start, recorded[k].end, recorded[k].perms);
		if (k >= nrecorded)
			fail("extra maps line %lx-%lx %s after restore",
			     now[k].start, now[k].end, now[k].perms);
		if (now[k].start != recorded[k].start ||
		    now[k].end != recorded[k].end ||
		    strcmp(now[k].perms, recorded[k].perms))
			fail("maps line %d is %lx-%lx %s, expected %lx-%lx %s", k,
			     now[k].start, now[k].end, now[k].perms,
			     recorded[k].start, recorded[k].end, recorded[k].perms);
	}

	/* 2. The contents (PROT_NONE areas made readable first). */
	protect(area(NONE_ZERO), AREA_SIZE, PROT_READ, "none_zero");
	protect(area(NONE_WRITTEN), AREA_SIZE, PROT_READ, "none_written");
	expect_zero(area(RO_ZERO), AREA_SIZE, "ro_zero area");
	expect_zero(area(NONE_ZERO), AREA_SIZE, "none_zero area");
	expect_pattern(area(RW), AREA_SIZE, SEED + RW, "rw area");
	if (memcmp(area(RX), code, sizeof(code)))
		fail("rx area: code bytes at %p changed", (void *)area(RX));
	{
		/* The bytes after the code still hold the pattern. */
		unsigned char expect[AREA_SIZE];

		fill_pattern(expect, AREA_SIZE, SEED + RX);
		for (k = sizeof(code); k < (int)AREA_SIZE; k++)
			if (area(RX)[k] != expect[k])
				fail("rx area: byte %d is 0x%02x, expected 0x%02x",
				     k, area(RX)[k], expect[k]);
	}
	expect_pattern(area(NONE_WRITTEN), AREA_SIZE, SEED + NONE_WRITTEN,
		       "none_written area (PROT_NONE)");
	expect_pattern(area(RO_WRITTEN), AREA_SIZE, SEED + RO_WRITTEN,
		       "ro_written area");
	expect_pattern(area(SPLIT), AREA_SIZE, SEED + SPLIT, "split area");

	/* 3. The r-x area is really executable. */
	{
		int (*fn)(void) = (int (*)(void))(void *)area(RX);
		int r = fn();

		if (r != 42)
			fail("function in the r-x area returned %d, expected 42", r);
	}
	pass();
}
