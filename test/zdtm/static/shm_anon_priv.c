/*
 * shm_anon_priv - anonymous shared memory also mapped privately, through
 * its /proc/self/map_files descriptor (what CRIU's shmemfd-priv checks,
 * and more).
 *
 * The parent maps 5 pages MAP_SHARED|MAP_ANONYMOUS at S and fills pages
 * 0-3 with a pattern, opens S's file through /proc/self/map_files (fd
 * kept), maps it MAP_PRIVATE from offset 1 page at P (5 pages) and writes
 * its own pattern into P's page 1 (a private copy of the object's page
 * 2), and maps it MAP_SHARED again from offset 2 pages at T.  It forks a
 * child, which inherits all three and sleeps in read() on a pipe.
 *
 * After SIGTERM: P's page 0 is the object's page 1, P's page 1 the
 * private copy, T's page 0 the object's page 2.  A write through T shows
 * through S (one object); a write through S into page 4 shows through
 * P's untouched page 3 (P still maps the object); the descriptor reads
 * S's pages.  The child then checks it sees those writes through its own
 * S and P, and the private copy in its P, and answers "ok".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define PG	4096UL
#define SEED	0x5a9e0000ULL	/* + page of the object */
#define PRIV	0x5a9e1000ULL
#define LATE_T	0x5a9e2000ULL
#define LATE_S	0x5a9e3000ULL

static unsigned char *s, *p, *t;

/* What every task sees after the parent's writes. */
static void check_after(const char *who)
{
	char w[96];

	snprintf(w, sizeof(w), "%s: P page 0 (object page 1)", who);
	expect_pattern(p, PG, SEED + 1, w);
	snprintf(w, sizeof(w), "%s: P page 1 (private copy)", who);
	expect_pattern(p + PG, PG, PRIV, w);
	snprintf(w, sizeof(w), "%s: S page 2 after a write through T", who);
	expect_pattern(s + 2 * PG, PG, LATE_T, w);
	snprintf(w, sizeof(w), "%s: P page 3 after a write through S", who);
	expect_pattern(p + 3 * PG, PG, LATE_S, w);
}

int main(void)
{
	int fd, p2c[2], c2p[2], status;
	unsigned char buf[PG];
	char path[64], c;
	pid_t child;

	test_init();
	s = mmap(NULL, 5 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED)
		fail("mmap shared: %s", test_strerror(errno));
	for (int i = 0; i < 4; i++)
		fill_pattern(s + i * PG, PG, SEED + i);
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)s,
		 (unsigned long)s + 5 * PG);
	fd = open(path, O_RDWR);
	if (fd < 0)
		fail("open %s: %s", path, test_strerror(errno));
	p = mmap(NULL, 5 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, PG);
	t = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 2 * PG);
	if (p == MAP_FAILED || t == MAP_FAILED)
		fail("mmap of the object's file: %s", test_strerror(errno));
	fill_pattern(p + PG, PG, PRIV);
	if (pipe(p2c) || pipe(c2p))
		fail("pipe: %s", test_strerror(errno));
	child = fork();
	if (child < 0)
		fail("fork: %s", test_strerror(errno));
	if (child == 0) {
		if (read(p2c[0], &c, 1) != 1)
			fail("child: read: %s", test_strerror(errno));
		check_after("child");
		if (write(c2p[1], "ok", 2) != 2)
			fail("child: write: %s", test_strerror(errno));
		_exit(0);
	}

	test_ready();
	test_wait_stop();

	expect_pattern(p, PG, SEED + 1, "P page 0 (object page 1)");
	expect_pattern(p + PG, PG, PRIV, "P page 1 (private copy)");
	expect_pattern(t, PG, SEED + 2, "T page 0 (object page 2)");
	expect_pattern(s + 3 * PG, PG, SEED + 3, "S page 3");
	expect_zero(s + 4 * PG, PG, "S page 4");
	fill_pattern(t, PG, LATE_T);
	fill_pattern(s + 4 * PG, PG, LATE_S);
	check_after("parent");
	if (pread(fd, buf, PG, 2 * PG) != PG)
		fail("pread: %s", test_strerror(errno));
	expect_pattern(buf, PG, LATE_T, "the descriptor at page 2");

	if (write(p2c[1], "g", 1) != 1)
		fail("write to child: %s", test_strerror(errno));
	if (read(c2p[0], buf, 2) != 2 || memcmp(buf, "ok", 2))
		fail("no answer from the child");
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("child exited with status %#x", status);
	pass();
}
