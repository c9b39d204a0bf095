/*
 * floor - the unavoidable work of restoring memory from amber's images,
 * done natively, to measure amber's restore against.
 *
 *   floor mem PAGES...
 *	maps one private anonymous area as large as all the PAGES images
 *	together and preads each image into it.
 *   floor vmas N FILE|- PAGES
 *	creates N one-page private VMAs, each mmap'ed at a fixed address
 *	(anonymous, or MAP_PRIVATE of FILE, page i at offset i % FILE's size),
 *	with a hole after each so none merge, and preads one page of the
 *	PAGES image into each.
 *
 *   floor files N DIR
 *	opens DIR/0 ... DIR/N-1 read-write and sets file i's offset to
 *	(i * 37) % 4001, as the files workload left them.
 *
 * It times the work itself with clock_gettime(CLOCK_MONOTONIC), from before
 * the first mmap (or open of FILE) to after the last pread, and prints
 * "floor_ns NANOSECONDS".  Address-space reservation and opening the pages
 * images are outside the timed part.  Errors go to stderr, exit status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PG		4096UL
#define MAX_FILES	4096
#define CHUNK		(1UL << 30)	/* largest single pread */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "floor: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static int open_size(const char *path, size_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st))
		die("%s: %s", path, strerror(errno));
	*size = st.st_size;
	return fd;
}

/* Read exactly len bytes at off of fd into buf. */
static void read_full(int fd, const char *path, unsigned char *buf, size_t len,
		      off_t off)
{
	while (len > 0) {
		ssize_t n = pread(fd, buf, len < CHUNK ? len : CHUNK, off);

		if (n <= 0)
			die("pread %s at %lld: %s", path, (long long)off,
			    n < 0 ? strerror(errno) : "end of file");
		buf += n;
		len -= n;
		off += n;
	}
}

static uint64_t floor_mem(int nfiles, char **paths)
{
	static int fds[MAX_FILES];
	static size_t sizes[MAX_FILES];
	size_t total = 0, at = 0;
	unsigned char *area;
	uint64_t t0;
	int i;

	if (nfiles < 1 || nfiles > MAX_FILES)
		die("mem: 1 to %d pages images", MAX_FILES);
	for (i = 0; i < nfiles; i++) {
		fds[i] = open_size(paths[i], &sizes[i]);
		total += sizes[i];
	}
	t0 = now_ns();
	area = mmap(NULL, total, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		die("mmap %zu bytes: %s", total, strerror(errno));
	for (i = 0; i < nfiles; i++) {
		read_full(fds[i], paths[i], area + at, sizes[i], 0);
		at += sizes[i];
	}
	return now_ns() - t0;
}

static uint64_t floor_vmas(unsigned long n, const char *file, const char *pages)
{
	size_t pages_size, file_size = 0;
	unsigned long npages, nfile = 0, i;
	int pfd = open_size(pages, &pages_size), ffd = -1;
	unsigned char *base;
	uint64_t t0;

	npages = pages_size / PG;
	if (npages == 0)
		die("%s: empty pages image", pages);
	/* Reserve 2n pages of address space, then free them for MAP_FIXED. */
	base = mmap(NULL, 2 * n * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED || munmap(base, 2 * n * PG))
		die("reserve %lu pages: %s", 2 * n, strerror(errno));

	t0 = now_ns();
	if (strcmp(file, "-")) {
		ffd = open_size(file, &file_size);
		nfile = file_size / PG;
		if (nfile == 0)
			die("%s: shorter than a page", file);
	}
	for (i = 0; i < n; i++) {
		unsigned char *p = base + 2 * i * PG;
		int flags = MAP_PRIVATE | MAP_FIXED_NOREPLACE;
		off_t off = ffd < 0 ? 0 : (off_t)(i % nfile) * PG;

		if (ffd < 0)
			flags |= MAP_ANONYMOUS;
		if (mmap(p, PG, PROT_READ | PROT_WRITE, flags, ffd, off) == MAP_FAILED)
			die("mmap page %lu at %p: %s", i, (void *)p, strerror(errno));
		read_full(pfd, pages, p, PG, (off_t)(i % npages) * PG);
	}
	if (ffd >= 0)
		close(ffd);
	return now_ns() - t0;
}

static uint64_t floor_files(unsigned long n, const char *dir)
{
	struct rlimit r;
	char path[4096];
	unsigned long i;
	uint64_t t0;

	if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < n + 64) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		off_t off = (off_t)(i * 37 % 4001);
		int fd;

		snprintf(path, sizeof(path), "%s/%lu", dir, i);
		fd = open(path, O_RDWR);
		if (fd < 0)
			die("open %s: %s", path, strerror(errno));
		if (lseek(fd, off, SEEK_SET) != off)
			die("lseek %s: %s", path, strerror(errno));
	}
	return now_ns() - t0;
}

int main(int argc, char **argv)
{
	uint64_t ns;

	if (argc >= 3 && !strcmp(argv[1], "mem"))
		ns = floor_mem(argc - 2, argv + 2);
	else if (argc == 5 && !strcmp(argv[1], "vmas"))
		ns = floor_vmas(strtoul(argv[2], NULL, 10), argv[3], argv[4]);
	else if (argc == 4 && !strcmp(argv[1], "files"))
		ns = floor_files(strtoul(argv[2], NULL, 10), argv[3]);
	else
		die("usage: floor mem PAGES... | floor vmas N FILE|- PAGES | floor files N DIR");
	printf("floor_ns %llu\n", (unsigned long long)ns);
	return 0;
}
