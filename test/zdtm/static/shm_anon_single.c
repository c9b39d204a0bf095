/*
 * shm_anon_single - one process with MAP_SHARED|MAP_ANONYMOUS memory, as
 * every CRIU zdtm test has one page of.
 *
 * Area A is 4 pages, pages 0, 1 and 3 filled with a pattern, page 2 never
 * touched (must read as zeroes).  Area B is 3 pages of another object,
 * filled, then its middle page made read-only: three VMAs of one object
 * at offsets 0, 1 and 2 pages.
 *
 * After SIGTERM: the contents; /proc/self/maps shows both areas as
 * "/dev/zero (deleted)", shared ('s'), with B's three VMAs at their
 * offsets and one inode; the middle page of B is still read-only (a
 * forked child that writes it dies of SIGSEGV); and both areas are still
 * shared: a forked child writes into A page 2 and B page 2, and the
 * parent sees it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define PG	4096UL
#define A_PAGES	4
#define B_PAGES	3
#define SEED_A	0x5a0000ULL	/* + page */
#define SEED_B	0x5b0000ULL	/* + page */
#define SEED_C	0x5c0000ULL	/* the child's writes */

static unsigned char *a, *b;

static void check_contents(const char *when)
{
	char what[96];
	int i;

	for (i = 0; i < A_PAGES; i++) {
		snprintf(what, sizeof(what), "%s: area A page %d", when, i);
		if (i == 2)
			expect_zero(a + i * PG, PG, what);
		else
			expect_pattern(a + i * PG, PG, SEED_A + i, what);
	}
	for (i = 0; i < B_PAGES; i++) {
		snprintf(what, sizeof(what), "%s: area B page %d", when, i);
		expect_pattern(b + i * PG, PG, SEED_B + i, what);
	}
}

/* Find the maps line of addr; fail unless it is as expected. */
static unsigned long check_map(unsigned long addr, unsigned long len,
			       const char *perms, unsigned long long off)
{
	struct vma *v;
	unsigned long ino = 0;
	int n, j;

	n = read_maps(&v);
	for (j = 0; j < n; j++)
		if (v[j].start == addr)
			break;
	if (j == n)
		fail("no mapping starts at %#lx", addr);
	if (v[j].end - v[j].start != len || strcmp(v[j].perms, perms) ||
	    v[j].offset != off || strcmp(v[j].path, "/dev/zero (deleted)"))
		fail("mapping at %#lx is %lx-%lx %s +%#llx \"%s\", expected %lu bytes "
		     "%s +%#llx \"/dev/zero (deleted)\"", addr, v[j].start, v[j].end,
		     v[j].perms, v[j].offset, v[j].path, len, perms, off);
	free(v);
	/* The inode, from the line itself. */
	{
		char line[512], want[32];
		FILE *f = fopen("/proc/self/maps", "r");

		snprintf(want, sizeof(want), "%lx-", addr);
		while (f && fgets(line, sizeof(line), f))
			if (!strncmp(line, want, strlen(want))) {
				sscanf(line, "%*s %*s %*s %*s %lu", &ino);
				break;
			}
		if (f)
			fclose(f);
	}
	return ino;
}

static void check_maps(void)
{
	unsigned long i0, i1, i2;

	check_map((unsigned long)a, A_PAGES * PG, "rw-s", 0);
	i0 = check_map((unsigned long)b, PG, "rw-s", 0);
	i1 = check_map((unsigned long)b + PG, PG, "r--s", PG);
	i2 = check_map((unsigned long)b + 2 * PG, PG, "rw-s", 2 * PG);
	if (i0 != i1 || i1 != i2)
		fail("area B's mappings have inodes %lu, %lu, %lu: not one object",
		     i0, i1, i2);
}

static int child_status(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			fail("waitpid: %s", test_strerror(errno));
	return status;
}

int main(void)
{
	pid_t pid;
	int i, st;

	test_init();
	a = mmap(NULL, A_PAGES * PG, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	b = mmap(NULL, B_PAGES * PG, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || b == MAP_FAILED)
		fail("mmap: %s", test_strerror(errno));
	for (i = 0; i < A_PAGES; i++)
		if (i != 2)
			fill_pattern(a + i * PG, PG, SEED_A + i);
	for (i = 0; i < B_PAGES; i++)
		fill_pattern(b + i * PG, PG, SEED_B + i);
	if (mprotect(b + PG, PG, PROT_READ))
		fail("mprotect: %s", test_strerror(errno));
	check_contents("before checkpoint");
	check_maps();

	test_ready();
	test_wait_stop();

	check_contents("after restore");
	check_maps();

	/* Still read-only: a child writing there dies of SIGSEGV. */
	pid = fork();
	if (pid < 0)
		fail("fork: %s", test_strerror(errno));
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		b[PG] = 1;
		_exit(0);
	}
	st = child_status(pid);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGSEGV)
		fail("writing area B's read-only page did not fault (status %#x)", st);

	/* Still shared: a child's writes reach us. */
	pid = fork();
	if (pid < 0)
		fail("fork: %s", test_strerror(errno));
	if (pid == 0) {
		fill_pattern(a + 2 * PG, PG, SEED_C);
		fill_pattern(b + 2 * PG, PG, SEED_C + 1);
		_exit(0);
	}
	st = child_status(pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fail("writing child ended with status %#x", st);
	expect_pattern(a + 2 * PG, PG, SEED_C, "area A page 2 after a child wrote it (not shared any more?)");
	expect_pattern(b + 2 * PG, PG, SEED_C + 1, "area B page 2 after a child wrote it (not shared any more?)");
	pass();
}
