/*
 * shm_anon_fork - a parent and two children sharing MAP_SHARED|
 * MAP_ANONYMOUS memory inherited across fork.
 *
 * The parent maps 4 pages, fills them with a pattern and forks two
 * children.  Child 1 leaves its mapping as it inherited it.  Child 2 makes
 * its last page read-only, so its mappings differ from its parent's (a
 * restore cannot simply keep what it inherits).  Each child then sleeps in
 * read() on a pipe from the parent.
 *
 * After SIGTERM (only the parent gets it) the parent checks the pattern,
 * then writes a new pattern into page 0 and sends each child its number.
 * Each child in turn checks page 0 holds the parent's new pattern and the
 * pages of the children before it theirs (it sees their writes), the
 * others the first pattern, writes its own pattern into page k, and
 * answers "ok".  The parent then checks pages 1 and 2
 * hold the children's patterns (it sees their writes), and that both
 * exited 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define PG		4096UL
#define PAGES		4
#define NCHILD		2
#define SEED		0xf0c0000ULL	/* + page */
#define PARENT_SEED	0xf0c1000ULL
#define CHILD_SEED	0xf0c2000ULL	/* + child */

static unsigned char *area;
static int p2c[NCHILD + 1][2], c2p[NCHILD + 1][2];

/* Child k: report and exit. */
static void child_say(int k, const char *msg, int code) __attribute__((noreturn));
static void child_say(int k, const char *msg, int code)
{
	if (write(c2p[k][1], msg, strlen(msg)) < 0)
		_exit(3);
	_exit(code);
}

static void child_main(int k) __attribute__((noreturn));
static void child_main(int k)
{
	char buf[16], msg[128];
	long off;
	int i;
	ssize_t n;

	if (k == 2 && mprotect(area + (PAGES - 1) * PG, PG, PROT_READ))
		child_say(k, "FAIL mprotect", 1);
	do
		n = read(p2c[k][0], buf, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1 || buf[0] != '0' + k)
		child_say(k, "FAIL no go byte from the parent", 1);
	off = pattern_mismatch(area, PG, PARENT_SEED);
	if (off >= 0) {
		snprintf(msg, sizeof(msg), "FAIL page 0 byte %ld: the parent's write is not visible", off);
		child_say(k, msg, 1);
	}
	/* Pages of the children before us hold what they wrote. */
	for (i = 1; i < PAGES; i++)
		if ((off = pattern_mismatch(area + i * PG, PG, i < k ? CHILD_SEED + i : SEED + i)) >= 0) {
			snprintf(msg, sizeof(msg), "FAIL page %d byte %ld differs%s", i, off,
				 i < k ? " (child 1's write is not visible)" : "");
			child_say(k, msg, 1);
		}
	fill_pattern(area + k * PG, PG, CHILD_SEED + k);
	child_say(k, "ok", 0);
}

int main(void)
{
	pid_t pid[NCHILD + 1];
	char buf[128], what[64];
	int i, k, status;
	ssize_t n;

	test_init();
	area = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		fail("mmap: %s", test_strerror(errno));
	for (i = 0; i < PAGES; i++)
		fill_pattern(area + i * PG, PG, SEED + i);
	for (k = 1; k <= NCHILD; k++) {
		if (pipe(p2c[k]) || pipe(c2p[k]))
			fail("pipe: %s", test_strerror(errno));
		pid[k] = fork();
		if (pid[k] < 0)
			fail("fork: %s", test_strerror(errno));
		if (pid[k] == 0)
			child_main(k);
		close(p2c[k][0]);
		close(c2p[k][1]);
	}
	/* Let child 2 split its mapping before the checkpoint. */
	usleep(100000);

	test_ready();
	test_wait_stop();

	for (i = 0; i < PAGES; i++) {
		snprintf(what, sizeof(what), "parent: page %d", i);
		expect_pattern(area + i * PG, PG, SEED + i, what);
	}
	fill_pattern(area, PG, PARENT_SEED);
	for (k = 1; k <= NCHILD; k++) {
		buf[0] = '0' + k;
		if (write(p2c[k][1], buf, 1) != 1)
			fail("write to child %d: %s", k, test_strerror(errno));
		memset(buf, 0, sizeof(buf));
		do
			n = read(c2p[k][0], buf, sizeof(buf) - 1);
		while (n < 0 && errno == EINTR);
		if (strcmp(buf, "ok"))
			fail("child %d (pid %d) says \"%s\"", k, pid[k], buf);
		if (waitpid(pid[k], &status, 0) != pid[k] || !WIFEXITED(status) || WEXITSTATUS(status))
			fail("child %d (pid %d) ended with status %#x", k, pid[k], status);
		snprintf(what, sizeof(what), "page %d written by child %d (not shared?)", k, k);
		expect_pattern(area + k * PG, PG, CHILD_SEED + k, what);
	}
	pass();
}
