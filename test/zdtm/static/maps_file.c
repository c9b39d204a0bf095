/*
 * maps_file - many small private file mappings (like CRIU's maps06).
 *
 * A 16 MiB file of known content is created in cwd and mapped MAP_PRIVATE
 * 4,000 times, one page each, every time at a different file offset, inside
 * a controlled address range laid out as repeated 3-page slots:
 *
 *     [file page, offset perm(i)] [anonymous page] [hole]
 *
 * (the range is reserved with a PROT_NONE mapping, which is then unmapped
 * and refilled piece by piece with MAP_FIXED).  That is 8,000 VMAs that can
 * not merge.  Every third file page gets its first half overwritten
 * (copy-on-write), every second anonymous page is filled with a pattern.
 * The file descriptor is closed before "ready", so the tool has to find the
 * file through the mappings; the driver runs this with RLIMIT_NOFILE 1024,
 * so the tool must not keep one fd open per mapping.
 *
 * After SIGTERM: /proc/self/maps shows exactly the same layout in the range
 * (every mapping: address, size, perms, anon or the file at the same
 * offset; holes still holes), every page holds the right bytes, and the
 * file itself was not modified by the private writes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "zdtm.h"

#define FILE_NAME	"maps_file.data"
#define PG		4096UL
#define FILE_PAGES	4096UL			/* 16 MiB */
#define NSLOTS		4000UL
#define SLOT_PAGES	3UL
#define REGION_SIZE	(NSLOTS * SLOT_PAGES * PG)
#define HALF		(PG / 2)

#define FILE_SEED	0xf11e000000ULL	/* + 2*page (+1 for the 2nd half) */
#define COW_SEED	0xc0e000000ULL	/* + slot */
#define ANON_SEED	0xa110000000ULL	/* + slot */

static unsigned char *region;

/* File page mapped in slot i: a permutation of 0..FILE_PAGES-1. */
static unsigned long file_page(unsigned long i)
{
	return (i * 7919) % FILE_PAGES;	/* 7919 is odd, so this is 1:1 */
}

static unsigned char *file_addr(unsigned long i)
{
	return region + (i * SLOT_PAGES) * PG;
}

static unsigned char *anon_addr(unsigned long i)
{
	return region + (i * SLOT_PAGES + 1) * PG;
}

static int cow_written(unsigned long i)  { return i % 3 == 0; }
static int anon_written(unsigned long i) { return i % 2 == 0; }

static void create_file(void)
{
	static unsigned char buf[64 * PG];
	unsigned long p, chunk = sizeof(buf) / PG;
	int fd = open(FILE_NAME, O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		fail("create %s: %s", FILE_NAME, test_strerror(errno));
	for (p = 0; p < FILE_PAGES; p++) {
		fill_pattern(buf + (p % chunk) * PG, HALF, FILE_SEED + 2 * p);
		fill_pattern(buf + (p % chunk) * PG + HALF, HALF,
			     FILE_SEED + 2 * p + 1);
		if (p % chunk == chunk - 1 &&
		    write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			fail("write %s: %s", FILE_NAME, test_strerror(errno));
	}
	close(fd);
}

/* Check that the range's mappings are exactly the slot layout. */
static void check_layout(const char *when)
{
	unsigned long end = (unsigned long)region + REGION_SIZE;
	unsigned long count = 0, k, want;
	struct vma *v;
	int n, j;

	n = read_maps(&v);
	for (j = 0; j < n; j++) {
		const char *base;

		if (v[j].end <= (unsigned long)region || v[j].start >= end)
			continue;
		if (v[j].start < (unsigned long)region || v[j].end > end ||
		    v[j].end - v[j].start != PG)
			fail("%s: mapping %lx-%lx %s \"%s\" in the test range "
			     "%p-%lx is not a single page inside it", when,
			     v[j].start, v[j].end, v[j].perms, v[j].path,
			     (void *)region, end);
		k = (v[j].start - (unsigned long)region) / PG;
		if (strcmp(v[j].perms, "rw-p"))
			fail("%s: mapping at %lx has perms %s, expected rw-p",
			     when, v[j].start, v[j].perms);
		switch (k % SLOT_PAGES) {
		case 0:
			base = strrchr(v[j].path, '/');
			want = file_page(k / SLOT_PAGES) * PG;
			if (!base || strcmp(base + 1, FILE_NAME) ||
			    v[j].offset != want)
				fail("%s: mapping at %lx is \"%s\" at offset %#llx, "
				     "expected %s at offset %#lx", when, v[j].start,
				     v[j].path, v[j].offset, FILE_NAME, want);
			break;
		case 1:
			if (v[j].path[0])
				fail("%s: mapping at %lx is \"%s\", expected "
				     "anonymous", when, v[j].start, v[j].path);
			break;
		default:
			fail("%s: mapping %lx-%lx %s \"%s\" where a hole should be",
			     when, v[j].start, v[j].end, v[j].perms, v[j].path);
		}
		count++;
	}
	free(v);
	if (count != 2 * NSLOTS)
		fail("%s: %lu mappings in the test range, expected %lu", when,
		     count, 2 * NSLOTS);
}

int main(void)
{
	unsigned long i;
	char what[96];
	int fd;

	test_init();
	create_file();

	region = mmap(NULL, REGION_SIZE, PROT_NONE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (region == MAP_FAILED)
		fail("reserve %lu bytes: %s", REGION_SIZE, test_strerror(errno));
	if (munmap(region, REGION_SIZE))
		fail("munmap: %s", test_strerror(errno));

	fd = open(FILE_NAME, O_RDONLY);
	if (fd < 0)
		fail("open %s: %s", FILE_NAME, test_strerror(errno));
	for (i = 0; i < NSLOTS; i++) {
		if (mmap(file_addr(i), PG, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_FIXED, fd, file_page(i) * PG) == MAP_FAILED)
			fail("mmap file page %lu at %p: %s", file_page(i),
			     (void *)file_addr(i), test_strerror(errno));
		if (mmap(anon_addr(i), PG, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
			fail("mmap anon page at %p: %s", (void *)anon_addr(i),
			     test_strerror(errno));
		if (cow_written(i))
			fill_pattern(file_addr(i), HALF, COW_SEED + i);
		if (anon_written(i))
			fill_pattern(anon_addr(i), PG, ANON_SEED + i);
	}
	close(fd);
	check_layout("before checkpoint");

	test_ready();
	test_wait_stop();

	check_layout("after SIGTERM");
	for (i = 0; i < NSLOTS; i++) {
		unsigned long p = file_page(i);

		snprintf(what, sizeof(what), "slot %lu file page %lu%s, 1st half",
			 i, p, cow_written(i) ? " (written)" : "");
		expect_pattern(file_addr(i), HALF,
			       cow_written(i) ? COW_SEED + i : FILE_SEED + 2 * p,
			       what);
		snprintf(what, sizeof(what), "slot %lu file page %lu, 2nd half",
			 i, p);
		expect_pattern(file_addr(i) + HALF, HALF, FILE_SEED + 2 * p + 1,
			       what);
		snprintf(what, sizeof(what), "slot %lu anonymous page", i);
		if (anon_written(i))
			expect_pattern(anon_addr(i), PG, ANON_SEED + i, what);
		else
			expect_zero(anon_addr(i), PG, what);
	}

	/* Private (copy-on-write) writes must not have reached the file. */
	fd = open(FILE_NAME, O_RDONLY);
	if (fd < 0)
		fail("reopen %s: %s", FILE_NAME, test_strerror(errno));
	for (i = 0; i < NSLOTS; i += 3) {
		unsigned char buf[HALF];
		unsigned long p = file_page(i);

		if (pread(fd, buf, HALF, p * PG) != (ssize_t)HALF)
			fail("pread %s page %lu: %s", FILE_NAME, p, test_strerror(errno));
		snprintf(what, sizeof(what), "%s page %lu on disk (MAP_PRIVATE "
			 "write leaked into the file?)", FILE_NAME, p);
		expect_pattern(buf, HALF, FILE_SEED + 2 * p, what);
	}
	close(fd);
	pass();
}
