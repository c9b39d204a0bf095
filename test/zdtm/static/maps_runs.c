/*
 * maps_runs - thousands of adjacent small VMAs whose pages are all dumped
 * (like CRIU's maps06 and transition/maps007), and one VMA with thousands
 * of separate runs of pages.
 *
 * Region A is 1,500 groups of three one-page mappings, back to back with
 * no hole anywhere, so that the whole region is one run of 4,500 adjacent
 * private VMAs:
 *
 *     [file page, MAP_PRIVATE, offset perm(i)] [anonymous] [PROT_NONE]
 *
 * The file page is written (copy-on-write) in four groups of five, only
 * read in the fifth; one group in seven has its written file page made
 * read-only afterwards.  The anonymous page is written, only read, or
 * never touched; one PROT_NONE page in four was written before its
 * protection was taken away.
 *
 * Region B is one anonymous VMA of 9,000 pages, every other page written
 * and one in six only read: 4,500 runs of data inside a single mapping,
 * more than one PAGEMAP_SCAN vector holds.
 *
 * After SIGTERM: /proc/self/maps shows exactly the same layout in both
 * regions (address, size, perms, anonymous or the file at the same
 * offset), every page holds the right bytes (a PROT_NONE page is made
 * readable to check it), and the file was not modified.
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

#define FILE_NAME	"maps_runs.data"
#define PG		4096UL
#define FILE_PAGES	2048UL			/* 8 MiB */
#define NGROUPS		1500UL
#define GROUP_PAGES	3UL
#define A_SIZE		(NGROUPS * GROUP_PAGES * PG)
#define B_PAGES		9000UL
#define B_SIZE		(B_PAGES * PG)
#define HALF		(PG / 2)

#define FILE_SEED	0xf11e000000ULL	/* + 2*page (+1 for the 2nd half) */
#define COW_SEED	0xc0e000000ULL	/* + group */
#define ANON_SEED	0xa110000000ULL	/* + group */
#define NONE_SEED	0x90e0000000ULL	/* + group */
#define B_SEED		0xbbb0000000ULL	/* + page */

static unsigned char *region_a, *region_b;

/* File page mapped in group i: a permutation of 0..FILE_PAGES-1. */
static unsigned long file_page(unsigned long i)
{
	return (i * 7919) % FILE_PAGES;	/* 7919 is odd, so this is 1:1 */
}

static unsigned char *page_a(unsigned long i, unsigned long k)
{
	return region_a + (i * GROUP_PAGES + k) * PG;
}

static int file_written(unsigned long i)  { return i % 5 != 4; }
static int file_readonly(unsigned long i) { return file_written(i) && i % 7 == 3; }
static int anon_written(unsigned long i)  { return i % 3 == 0; }
static int anon_read(unsigned long i)     { return i % 3 == 1; }
static int none_written(unsigned long i)  { return i % 4 == 0; }

static int b_written(unsigned long j) { return j % 2 == 0; }
static int b_read(unsigned long j)    { return j % 6 == 1; }

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

/* An address range of size bytes that nothing is mapped in. */
static unsigned char *free_range(unsigned long size)
{
	void *p = mmap(NULL, size, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		fail("reserve %lu bytes: %s", size, test_strerror(errno));
	if (munmap(p, size))
		fail("munmap: %s", test_strerror(errno));
	return p;
}

static void map_fixed(void *addr, int prot, int flags, int fd, off_t off)
{
	if (mmap(addr, PG, prot, flags | MAP_FIXED, fd, off) == MAP_FAILED)
		fail("mmap at %p: %s", addr, test_strerror(errno));
}

static void setup_group(unsigned long i, int fd)
{
	volatile unsigned char sink;

	map_fixed(page_a(i, 0), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd,
		  file_page(i) * PG);
	map_fixed(page_a(i, 1), PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	map_fixed(page_a(i, 2), PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (file_written(i))
		fill_pattern(page_a(i, 0), HALF, COW_SEED + i);
	else
		sink = page_a(i, 0)[HALF];
	if (file_readonly(i) && mprotect(page_a(i, 0), PG, PROT_READ))
		fail("mprotect file page of group %lu: %s", i, test_strerror(errno));
	if (anon_written(i))
		fill_pattern(page_a(i, 1), PG, ANON_SEED + i);
	else if (anon_read(i))
		sink = page_a(i, 1)[7];
	if (none_written(i))
		fill_pattern(page_a(i, 2), PG, NONE_SEED + i);
	if (mprotect(page_a(i, 2), PG, PROT_NONE))
		fail("mprotect PROT_NONE page of group %lu: %s", i, test_strerror(errno));
	(void)sink;
}

static void setup_b(void)
{
	volatile unsigned char sink;
	unsigned long j;

	if (mmap(region_b, B_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
		fail("mmap region B: %s", test_strerror(errno));
	for (j = 0; j < B_PAGES; j++) {
		if (b_written(j))
			fill_pattern(region_b + j * PG, PG, B_SEED + j);
		else if (b_read(j))
			sink = region_b[j * PG + 99];
	}
	(void)sink;
}

static const char *want_perms(unsigned long i, unsigned long k)
{
	switch (k) {
	case 0:
		return file_readonly(i) ? "r--p" : "rw-p";
	case 1:
		return "rw-p";
	}
	return "---p";
}

/* Check one mapping of region A against the group layout. */
static void check_a_mapping(const char *when, const struct vma *v)
{
	unsigned long n = (v->start - (unsigned long)region_a) / PG;
	unsigned long i = n / GROUP_PAGES, k = n % GROUP_PAGES;
	const char *base;

	if (v->start < (unsigned long)region_a ||
	    v->end > (unsigned long)region_a + A_SIZE || v->end - v->start != PG)
		fail("%s: mapping %lx-%lx %s \"%s\" is not a single page inside "
		     "region A %p-%lx", when, v->start, v->end, v->perms, v->path,
		     (void *)region_a, (unsigned long)region_a + A_SIZE);
	if (strcmp(v->perms, want_perms(i, k)))
		fail("%s: mapping at %lx (group %lu page %lu) has perms %s, "
		     "expected %s", when, v->start, i, k, v->perms, want_perms(i, k));
	if (k == 0) {
		base = strrchr(v->path, '/');
		if (!base || strcmp(base + 1, FILE_NAME) ||
		    v->offset != file_page(i) * PG)
			fail("%s: mapping at %lx is \"%s\" at offset %#llx, expected "
			     "%s at offset %#lx", when, v->start, v->path, v->offset,
			     FILE_NAME, file_page(i) * PG);
	} else if (v->path[0]) {
		fail("%s: mapping at %lx is \"%s\", expected anonymous", when,
		     v->start, v->path);
	}
}

/* Check that both regions' mappings are exactly the layout set up. */
static void check_layout(const char *when)
{
	unsigned long a_end = (unsigned long)region_a + A_SIZE;
	unsigned long b_end = (unsigned long)region_b + B_SIZE;
	unsigned long count_a = 0, count_b = 0;
	struct vma *v;
	int n, j;

	n = read_maps(&v);
	for (j = 0; j < n; j++) {
		if (v[j].end > (unsigned long)region_a && v[j].start < a_end) {
			check_a_mapping(when, &v[j]);
			count_a++;
		}
		if (v[j].end > (unsigned long)region_b && v[j].start < b_end) {
			if (v[j].start != (unsigned long)region_b ||
			    v[j].end != b_end || strcmp(v[j].perms, "rw-p") ||
			    v[j].path[0])
				fail("%s: mapping %lx-%lx %s \"%s\" in region B, "
				     "expected one anonymous rw-p mapping %p-%lx",
				     when, v[j].start, v[j].end, v[j].perms,
				     v[j].path, (void *)region_b, b_end);
			count_b++;
		}
	}
	free(v);
	if (count_a != GROUP_PAGES * NGROUPS || count_b != 1)
		fail("%s: %lu mappings in region A and %lu in region B, expected "
		     "%lu and 1", when, count_a, count_b, GROUP_PAGES * NGROUPS);
}

static void check_group(unsigned long i)
{
	unsigned long p = file_page(i);
	char what[96];

	snprintf(what, sizeof(what), "group %lu file page %lu%s, 1st half", i,
		 p, file_written(i) ? " (written)" : "");
	expect_pattern(page_a(i, 0), HALF,
		       file_written(i) ? COW_SEED + i : FILE_SEED + 2 * p, what);
	snprintf(what, sizeof(what), "group %lu file page %lu, 2nd half", i, p);
	expect_pattern(page_a(i, 0) + HALF, HALF, FILE_SEED + 2 * p + 1, what);
	snprintf(what, sizeof(what), "group %lu anonymous page", i);
	if (anon_written(i))
		expect_pattern(page_a(i, 1), PG, ANON_SEED + i, what);
	else
		expect_zero(page_a(i, 1), PG, what);
	if (mprotect(page_a(i, 2), PG, PROT_READ))
		fail("mprotect PROT_NONE page of group %lu readable: %s", i,
		     test_strerror(errno));
	snprintf(what, sizeof(what), "group %lu PROT_NONE page", i);
	if (none_written(i))
		expect_pattern(page_a(i, 2), PG, NONE_SEED + i, what);
	else
		expect_zero(page_a(i, 2), PG, what);
}

static void check_b(void)
{
	char what[64];
	unsigned long j;

	for (j = 0; j < B_PAGES; j++) {
		snprintf(what, sizeof(what), "region B page %lu", j);
		if (b_written(j))
			expect_pattern(region_b + j * PG, PG, B_SEED + j, what);
		else
			expect_zero(region_b + j * PG, PG, what);
	}
}

/* Private (copy-on-write) writes must not have reached the file. */
static void check_file(void)
{
	unsigned char buf[HALF];
	char what[96];
	unsigned long i;
	int fd = open(FILE_NAME, O_RDONLY);

	if (fd < 0)
		fail("reopen %s: %s", FILE_NAME, test_strerror(errno));
	for (i = 0; i < NGROUPS; i++) {
		unsigned long p = file_page(i);

		if (!file_written(i))
			continue;
		if (pread(fd, buf, HALF, p * PG) != (ssize_t)HALF)
			fail("pread %s page %lu: %s", FILE_NAME, p, test_strerror(errno));
		snprintf(what, sizeof(what), "%s page %lu on disk (MAP_PRIVATE "
			 "write leaked into the file?)", FILE_NAME, p);
		expect_pattern(buf, HALF, FILE_SEED + 2 * p, what);
	}
	close(fd);
}

int main(void)
{
	unsigned long i;
	int fd;

	test_init();
	create_file();

	/* Both ranges are found at once, with a hole before, between and
	 * after them, so that no mapping of theirs merges with another. */
	region_a = free_range(PG + A_SIZE + PG + B_SIZE + PG) + PG;
	region_b = region_a + A_SIZE + PG;

	fd = open(FILE_NAME, O_RDONLY);
	if (fd < 0)
		fail("open %s: %s", FILE_NAME, test_strerror(errno));
	for (i = 0; i < NGROUPS; i++)
		setup_group(i, fd);
	close(fd);
	setup_b();
	check_layout("before checkpoint");

	test_ready();
	test_wait_stop();

	check_layout("after SIGTERM");
	for (i = 0; i < NGROUPS; i++)
		check_group(i);
	check_b();
	check_file();
	pass();
}
