/*
 * filemap - many one-page private mappings of one file (like CRIU's maps06).
 *
 * Usage: filemap N.  A 16 MiB file (filemap.data, in the current directory)
 * is written with a pattern per page and mapped MAP_PRIVATE N times, one
 * page each, side by side, mapping i showing file page (i * 7919) % 4096, so
 * no two neighbours can merge.  The first 64 bytes of every mapped page are
 * then overwritten (a private copy-on-write change), and the file is closed
 * before "ready": a restore has to find it through the mappings and open it
 * once, not once per mapping.  After SIGTERM: the same N one-page VMAs, each
 * page holding its private bytes and the file's bytes after them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

#define FILE_NAME	"filemap.data"
#define FILE_PAGES	4096UL	/* 16 MiB */
#define PRIVATE_BYTES	64
#define FILE_SEED	0x66696c6500000000ULL	/* + file page */
#define COW_BYTE	0xc5

static unsigned long file_page(unsigned long i)
{
	return (i * 7919) % FILE_PAGES;
}

/* What mapping i must hold: its file page with the private bytes on top. */
static void expected(unsigned char *page, unsigned long i)
{
	fill_page(page, FILE_SEED + file_page(i));
	memset(page, COW_BYTE ^ (unsigned char)i, PRIVATE_BYTES);
}

static void create_file(void)
{
	static unsigned char buf[PG];
	unsigned long p;
	int fd = open(FILE_NAME, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		fail("create %s: %s", FILE_NAME, strerror(errno));
	for (p = 0; p < FILE_PAGES; p++) {
		fill_page(buf, FILE_SEED + p);
		if (write(fd, buf, PG) != (ssize_t)PG)
			fail("write %s: %s", FILE_NAME, strerror(errno));
	}
	close(fd);
}

static void map_all(unsigned char *area, unsigned long n)
{
	unsigned long i;
	int fd = open(FILE_NAME, O_RDONLY);

	if (fd < 0)
		fail("open %s: %s", FILE_NAME, strerror(errno));
	for (i = 0; i < n; i++) {
		unsigned char *p = area + i * PG;

		if (mmap(p, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED,
			 fd, file_page(i) * PG) == MAP_FAILED)
			fail("mmap file page %lu at %p: %s", file_page(i),
			     (void *)p, strerror(errno));
		memset(p, COW_BYTE ^ (unsigned char)i, PRIVATE_BYTES);
	}
	close(fd);
}

static void check_layout(unsigned char *area, unsigned long n, const char *when)
{
	unsigned long lo = (unsigned long)area;
	unsigned long got = count_pages_maps(lo, lo + n * PG, "rw-p");

	if (got != n)
		fail("%s: %lu one-page rw-p VMAs, expected %lu", when, got, n);
}

int main(int argc, char **argv)
{
	static unsigned char want[PG];
	unsigned long n, i;
	unsigned char *area;

	bench_init();
	if (argc != 2)
		fail("usage: filemap N");
	n = arg_ulong(argv[1], "number of mappings");
	if (n > FILE_PAGES)
		fail("at most %lu mappings", FILE_PAGES);
	create_file();
	/* Reserve the range, then map the file into it piece by piece. */
	area = mmap(NULL, n * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		fail("reserve %lu pages: %s", n, strerror(errno));
	map_all(area, n);
	check_layout(area, n, "before checkpoint");

	bench_ready();
	bench_wait_stop();

	check_layout(area, n, "after restore");
	for (i = 0; i < n; i++) {
		expected(want, i);
		if (memcmp(area + i * PG, want, PG))
			fail("mapping %lu (file page %lu) at %p: wrong contents",
			     i, file_page(i), (void *)(area + i * PG));
	}
	pass();
}
