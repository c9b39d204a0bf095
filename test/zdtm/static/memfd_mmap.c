/*
 * memfd_mmap - a memfd only mapped: its descriptor closed before the
 * checkpoint.
 *
 * memfd "amber-memfd-mmap" of 4 pages holds a pattern (page 3 left zero).
 * It is mapped MAP_SHARED read-write (all 4 pages) and MAP_PRIVATE
 * (pages 1-2), whose first page is then written (a private copy); the
 * descriptor is closed.
 *
 * After SIGTERM: /proc/self/maps names both mappings
 * "/memfd:amber-memfd-mmap (deleted)" with one inode; the shared mapping
 * shows the pattern, the private one its own copy, then the memfd's page
 * 2; a write through the shared mapping shows in the untouched private
 * page (one memfd); the memfd reopened through
 * /proc/self/map_files/START-END reads what the mapping holds, and a
 * pwrite to it shows in the mapping.
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

#define NAME	"amber-memfd-mmap"
#define PG	4096UL
#define PAGES	4
#define SEED	0x3e3f3a00ULL	/* + page */
#define COW	0x3e3fc0e0ULL
#define LATE	0x3e3f1a7eULL

static unsigned char *sh, *pr;

/* The inode of the mapping at addr, after checking its name. */
static unsigned long map_inode(void *addr, const char *perms)
{
	char line[512], want[32], p[8], path[256];
	unsigned long ino = 0;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		fail("open maps: %s", test_strerror(errno));
	snprintf(want, sizeof(want), "%lx-", (unsigned long)addr);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, want, strlen(want))) {
			path[0] = 0;
			if (sscanf(line, "%*s %7s %*s %*s %lu %255[^\n]", p, &ino, path) < 2)
				fail("maps line \"%s\"", line);
			if (strcmp(p, perms) || strcmp(path, "/memfd:" NAME " (deleted)"))
				fail("mapping at %p is %s \"%s\", expected %s \"/memfd:" NAME " (deleted)\"",
				     addr, p, path, perms);
			fclose(f);
			return ino;
		}
	fail("no mapping at %p", addr);
}

int main(void)
{
	static unsigned char buf[PG];
	char path[64];
	int fd, i;

	test_init();
	fd = memfd_create(NAME, 0);
	if (fd < 0 || ftruncate(fd, PAGES * PG))
		fail("memfd: %s", test_strerror(errno));
	sh = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	pr = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, PG);
	if (sh == MAP_FAILED || pr == MAP_FAILED)
		fail("mmap: %s", test_strerror(errno));
	for (i = 0; i < PAGES - 1; i++)
		fill_pattern(sh + i * PG, PG, SEED + i);
	fill_pattern(pr, PG, COW);
	close(fd);

	test_ready();
	test_wait_stop();

	if (map_inode(sh, "rw-s") != map_inode(pr, "rw-p"))
		fail("the shared and private mappings are of two memfds");
	for (i = 0; i < PAGES - 1; i++) {
		snprintf(path, sizeof(path), "shared mapping page %d", i);
		expect_pattern(sh + i * PG, PG, SEED + i, path);
	}
	expect_zero(sh + (PAGES - 1) * PG, PG, "shared mapping page 3");
	expect_pattern(pr, PG, COW, "private mapping page 0 (written)");
	expect_pattern(pr + PG, PG, SEED + 2, "private mapping page 1 (the memfd's page 2)");

	/* One memfd: a write through the shared mapping shows in the
	 * private mapping's untouched page. */
	fill_pattern(sh + 2 * PG, PG, LATE);
	expect_pattern(pr + PG, PG, LATE, "private mapping page 1 after a write to the memfd");

	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx",
		 (unsigned long)sh, (unsigned long)sh + PAGES * PG);
	fd = open(path, O_RDWR);
	if (fd < 0)
		fail("open %s: %s", path, test_strerror(errno));
	if (pread(fd, buf, PG, 0) != PG)
		fail("pread %s: %s", path, test_strerror(errno));
	expect_pattern(buf, PG, SEED, "memfd page 0 read through map_files");
	fill_pattern(buf, PG, LATE + 1);
	if (pwrite(fd, buf, PG, 3 * PG) != PG)
		fail("pwrite %s: %s", path, test_strerror(errno));
	expect_pattern(sh + 3 * PG, PG, LATE + 1, "shared mapping page 3 after a pwrite to the memfd");
	close(fd);
	pass();
}
