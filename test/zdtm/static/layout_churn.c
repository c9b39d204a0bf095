/*
 * layout_churn - a process whose mappings keep changing while it is
 * migrated: 16 private anonymous regions, each in a slot pair of its
 * own, one changed at random after the other, without a pause (a
 * layout that changes between the last pre-dump and the freeze, as soon
 * as the process runs at all between them): made read-only or writable
 * again (mprotect), moved to its other slot (mremap), grown or shrunk
 * in place (mremap), or rewritten with a new pattern. A dump that took
 * a stale layout for the frozen one (amber migrate's final dump reuses
 * its pre-dump's smaps where maps shows no change) restores regions at
 * the wrong place, of the wrong size or protection.
 *
 * After SIGTERM each region must be mapped exactly where and as large
 * as the process left it, with its protection (per /proc/self/maps),
 * and hold its pattern.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "zdtm.h"

#define PAGE		4096UL
#define REGIONS		16
#define SLOT		(32 * PAGE)	/* a region's room: it grows to 16 pages */
#define MAX_PAGES	16

struct region {
	char *at;
	unsigned long pages;
	int slot;		/* 0 or 1 of its pair */
	int writable;
	uint64_t seed;
};

static struct region regions[REGIONS];
static char *base;
static uint64_t rnd = 0x6c61796f7574ULL;

static uint64_t next(void)
{
	rnd = zdtm_mix(rnd + 0x9e3779b97f4a7c15ULL);
	return rnd;
}

static char *slot_at(int i, int slot)
{
	return base + (2 * i + slot) * SLOT;
}

static void protect(struct region *r, int writable)
{
	if (mprotect(r->at, r->pages * PAGE, writable ? PROT_READ | PROT_WRITE : PROT_READ))
		fail("mprotect: %s", test_strerror(errno));
	r->writable = writable;
}

/* fill writes the region's pattern, writable for the while. */
static void fill(struct region *r)
{
	int was = r->writable;

	if (!was)
		protect(r, 1);
	fill_pattern(r->at, r->pages * PAGE, r->seed);
	if (!was)
		protect(r, 0);
}

static void change(struct region *r, int i)
{
	unsigned long pages;
	char *to;

	switch (next() % 4) {
	case 0:
		protect(r, !r->writable);
		break;
	case 1:
		to = slot_at(i, !r->slot);
		if (mremap(r->at, r->pages * PAGE, r->pages * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, to) != to)
			fail("mremap to the other slot: %s", test_strerror(errno));
		r->at = to;
		r->slot = !r->slot;
		break;
	case 2:
		pages = 1 + next() % MAX_PAGES;
		if (mremap(r->at, r->pages * PAGE, pages * PAGE, 0) != r->at)
			fail("mremap in place: %s", test_strerror(errno));
		r->pages = pages;
		fill(r);
		break;
	case 3:
		r->seed = next();
		fill(r);
		break;
	}
}

static void check(void)
{
	struct vma *vmas;
	int n = read_maps(&vmas);

	for (int i = 0; i < REGIONS; i++) {
		struct region *r = &regions[i];
		const char *want = r->writable ? "rw-p" : "r--p";
		int found = 0;

		for (int j = 0; j < n; j++) {
			if (vmas[j].start != (unsigned long)r->at || vmas[j].end != (unsigned long)r->at + r->pages * PAGE)
				continue;
			if (strcmp(vmas[j].perms, want))
				fail("region %d %p+%lu pages is %s, want %s", i, r->at, r->pages, vmas[j].perms, want);
			found = 1;
		}
		if (!found)
			fail("region %d %p+%lu pages (slot %d) is not mapped as one", i, r->at, r->pages, r->slot);
		expect_pattern(r->at, r->pages * PAGE, r->seed, "region");
	}
}

int main(void)
{
	test_init();
	/* Room for every slot, given back: the regions are made in it. */
	base = mmap(NULL, 2 * REGIONS * SLOT, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		fail("mmap: %s", test_strerror(errno));
	munmap(base, 2 * REGIONS * SLOT);
	for (int i = 0; i < REGIONS; i++) {
		struct region *r = &regions[i];

		r->pages = 1 + next() % MAX_PAGES;
		r->at = mmap(slot_at(i, 0), r->pages * PAGE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (r->at != slot_at(i, 0))
			fail("mmap region %d: %s", i, test_strerror(errno));
		r->writable = 1;
		r->seed = next();
		fill(r);
	}
	test_ready();
	while (!test_stopped()) {
		int i = next() % REGIONS;

		change(&regions[i], i);
	}
	check();
	pass();
}
