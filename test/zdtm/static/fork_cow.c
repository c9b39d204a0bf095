/*
 * fork_cow - a parent and 3 children sharing a 16 MiB anonymous area
 * copy-on-write, talking over pipes with data in flight.
 *
 * The parent maps 16 MiB (MAP_PRIVATE|MAP_ANONYMOUS), fills it with a
 * pattern (a different one in each 1 MiB chunk) and forks children 1..3.  Child k overwrites its own 1 MiB slice
 * (at (4k - 1) MiB) with a pattern of its own and leaves the rest untouched,
 * so 15 MiB of it stay shared with the parent and the other children.  The
 * parent writes nothing to the area after the fork.
 *
 * Pipes: each child has one from the parent (p2c) and one to the parent
 * (c2p); one more pipe ("go", parent -> all children) is what the children
 * sleep on, blocked in read().  At setup child k writes "R" followed by
 * "pid <pid>\n" to c2p; the parent reads only the "R", so the rest stays in
 * flight.  The parent writes "hello" into child 1's p2c, which child 1
 * reads only after SIGTERM.  Then the parent prints `ready`.
 *
 * After SIGTERM (only the parent gets it) the parent checks its own copy of
 * the area (all the original pattern), writes "bye <k>\n" to each p2c and
 * closes it, and writes one 'G' per child to the go pipe.  Child k then
 * checks the whole 16 MiB (its slice its pattern, the rest the original),
 * its PID and parent PID, and that p2c holds exactly "hello" (child 1 only)
 * then "bye <k>\n" then EOF; it reports "ok\n" or "FAIL <reason>\n" on c2p
 * and exits 0 or 1.  The parent requires c2p to deliver "pid <pid>\nok\n"
 * then EOF, and exit status 0, from every child (8 s in all).
 *
 * The driver also sums the tree's PSS before dump and after restore
 * (cow_test.go): without COW sharing restored, it would go from ~19 MiB to
 * ~64 MiB.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define MiB		(1024 * 1024UL)
#define AREA		(16 * MiB)
#define NCHILD		3
#define SEED		0xc0e0000000000000ULL
#define CHILD_SEED	0xc0e1000000000000ULL	/* + child number */
#define SLICE_OFF(k)	((4 * (k) - 1) * MiB)
#define DEADLINE_S	8

static unsigned char *area;
static pid_t parent_pid;
static int go[2];
static int p2c[NCHILD + 1][2], c2p[NCHILD + 1][2];	/* [1..NCHILD] */
static pid_t child_pid[NCHILD + 1];
static int me;		/* child number in a child, 0 in the parent */

/* Child: report "FAIL <reason>" to the parent (or stderr) and exit 1. */
static void cfail(const char *fmt, ...)
	__attribute__((noreturn, format(printf, 1, 2)));
static void cfail(const char *fmt, ...)
{
	char msg[512];
	int n, m;
	va_list ap;

	n = snprintf(msg, sizeof(msg), "FAIL ");
	va_start(ap, fmt);
	m = vsnprintf(msg + n, sizeof(msg) - n - 1, fmt, ap);
	va_end(ap);
	n += m < (int)(sizeof(msg) - n - 1) ? m : (int)(sizeof(msg) - n - 2);
	msg[n++] = '\n';
	if (write(c2p[me][1], msg, n) != n) {
		char line[600];
		int l = snprintf(line, sizeof(line), "fork_cow child %d (pid %d): %.*s",
				 me, getpid(), n, msg);
		if (write(2, line, l) < 0)
			_exit(1);
	}
	_exit(1);
}

/*
 * The area is 16 chunks of 1 MiB; chunk i holds fill_pattern(SEED + i), or
 * fill_pattern(CHILD_SEED + k) for the slice of child k.
 */
static uint64_t chunk_seed(int k, int chunk)
{
	if (k && (unsigned long)chunk * MiB == SLICE_OFF(k))
		return CHILD_SEED + k;
	return SEED + chunk;
}

static void fill_area(int k)
{
	int i;

	for (i = 0; i < (int)(AREA / MiB); i++)
		if (k == 0 || chunk_seed(k, i) != SEED + i)
			fill_pattern(area + i * MiB, MiB, chunk_seed(k, i));
}

/*
 * Offset of the first byte of the area not as child k (0: the parent)
 * expects, or -1; *expect is set to the byte expected there.
 */
static long area_mismatch(int k, unsigned char *expect)
{
	long off;
	int i;

	for (i = 0; i < (int)(AREA / MiB); i++) {
		off = pattern_mismatch(area + i * MiB, MiB, chunk_seed(k, i));
		if (off >= 0) {
			*expect = pattern_byte(off, chunk_seed(k, i));
			return off + i * MiB;
		}
	}
	return -1;
}

static ssize_t read_full(int fd, char *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = read(fd, buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += n;
	}
	return got;
}

static void child_main(void) __attribute__((noreturn));
static void child_main(void)
{
	pid_t pid = getpid();
	char buf[64], want[64];
	unsigned char expect;
	long off;
	ssize_t n;
	int j;

	/* Keep only our own ends: stray write ends would hide EOFs. */
	close(go[1]);
	for (j = 1; j <= NCHILD; j++) {
		if (j != me) {
			close(p2c[j][0]);
			close(c2p[j][1]);
		}
		close(p2c[j][1]);
		close(c2p[j][0]);
	}

	fill_area(me);
	if ((off = area_mismatch(me, &expect)) >= 0)
		cfail("setup: area byte at offset %ld is 0x%02x, expected 0x%02x",
		      off, area[off], expect);
	n = snprintf(buf, sizeof(buf), "Rpid %d\n", pid);
	if (write(c2p[me][1], buf, n) != n)
		_exit(1);

	/* Sleep until the parent says go. */
	do
		n = read(go[0], buf, 1);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		cfail("read go pipe: %s", test_strerror(errno));
	if (n == 0)
		cfail("go pipe: EOF without a go byte (parent gone or write end lost)");
	if (buf[0] != 'G')
		cfail("go pipe: got byte 0x%02x, expected 'G'", (unsigned char)buf[0]);

	if (getpid() != pid)
		cfail("getpid() is %d, was %d", getpid(), pid);
	if (getppid() != parent_pid)
		cfail("getppid() is %d, expected %d", getppid(), parent_pid);
	if ((off = area_mismatch(me, &expect)) >= 0)
		cfail("area byte at offset %ld (%p) is 0x%02x, expected 0x%02x",
		      off, (void *)(area + off), area[off], expect);

	n = snprintf(want, sizeof(want), "%sbye %d\n", me == 1 ? "hello" : "", me);
	memset(buf, 0, sizeof(buf));
	if ((n = read_full(p2c[me][0], buf, sizeof(buf) - 1)) < 0)
		cfail("read from parent pipe: %s", test_strerror(errno));
	if (strcmp(buf, want))
		cfail("parent pipe delivered \"%.*s\" (%zd bytes), expected \"%s\" then EOF",
		      (int)n, buf, n, want);

	if (write(c2p[me][1], "ok\n", 3) != 3)
		_exit(1);
	_exit(0);
}

/* Parent: read c2p of child k until EOF or the deadline. */
static void collect(int k, time_t deadline, char *buf, size_t len)
{
	struct pollfd p = { .fd = c2p[k][0], .events = POLLIN };
	size_t got = 0;
	ssize_t n;
	int left;

	for (;;) {
		left = (int)(deadline - time(NULL));
		if (left <= 0)
			fail("child %d (pid %d): no EOF on its pipe within %d s; "
			     "got \"%.*s\"", k, child_pid[k], DEADLINE_S, (int)got, buf);
		if (poll(&p, 1, left * 1000) < 0) {
			if (errno == EINTR)
				continue;
			fail("poll: %s", test_strerror(errno));
		}
		if (!p.revents)
			continue;
		n = read(c2p[k][0], buf + got, len - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail("read from child %d: %s", k, test_strerror(errno));
		if (n == 0)
			break;
		got += n;
		if (got == len - 1)
			break;
	}
	buf[got] = '\0';
}

/* Make a pipe's contents printable on one line: '\n' becomes '|'. */
static void oneline(char *s)
{
	while ((s = strchr(s, '\n')))
		*s = '|';
}

int main(void)
{
	char buf[1024], want[64];
	time_t deadline;
	unsigned char expect;
	ssize_t n;
	int k, status, avail;
	long off;
	pid_t w;

	test_init();
	parent_pid = getpid();

	area = mmap(NULL, AREA, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		fail("mmap 16 MiB: %s", test_strerror(errno));
	fill_area(0);

	if (pipe(go))
		fail("pipe: %s", test_strerror(errno));
	for (k = 1; k <= NCHILD; k++)
		if (pipe(p2c[k]) || pipe(c2p[k]))
			fail("pipe: %s", test_strerror(errno));

	for (k = 1; k <= NCHILD; k++) {
		child_pid[k] = fork();
		if (child_pid[k] < 0)
			fail("fork: %s", test_strerror(errno));
		if (child_pid[k] == 0) {
			me = k;
			child_main();
		}
	}
	close(go[0]);
	for (k = 1; k <= NCHILD; k++) {
		close(p2c[k][0]);
		close(c2p[k][1]);
	}

	/* Each child's "R"; the "pid <pid>\n" after it stays in the pipe. */
	for (k = 1; k <= NCHILD; k++)
		if ((n = read_full(c2p[k][0], buf, 1)) != 1 || buf[0] != 'R') {
			n = n == 1;	/* keep the byte read, if any */
			collect(k, time(NULL) + 2, buf + n, sizeof(buf) - n);
			oneline(buf);
			fail("child %d (pid %d) did not set up: %s", k,
			     child_pid[k], buf);
		}
	if (write(p2c[1][1], "hello", 5) != 5)
		fail("write hello to child 1: %s", test_strerror(errno));
	if (ioctl(p2c[1][1], FIONREAD, &avail) || avail != 5)
		fail("child 1's pipe should hold 5 unread bytes, FIONREAD says %d",
		     avail);

	test_ready();
	test_wait_stop();

	if ((off = area_mismatch(0, &expect)) >= 0)
		fail("parent: area byte at offset %ld (%p) is 0x%02x, expected 0x%02x",
		     off, (void *)(area + off), area[off], expect);

	for (k = 1; k <= NCHILD; k++) {
		n = snprintf(buf, sizeof(buf), "bye %d\n", k);

		if (write(p2c[k][1], buf, n) != n)
			fail("write to child %d: %s", k, test_strerror(errno));
		close(p2c[k][1]);
	}
	if (write(go[1], "GGG", NCHILD) != NCHILD)
		fail("write go pipe: %s", test_strerror(errno));
	close(go[1]);

	deadline = time(NULL) + DEADLINE_S;
	for (k = 1; k <= NCHILD; k++) {
		collect(k, deadline, buf, sizeof(buf));
		snprintf(want, sizeof(want), "pid %d\nok\n", child_pid[k]);
		if (strcmp(buf, want)) {
			oneline(buf);
			fail("child %d (pid %d) reported \"%s\", expected "
			     "\"pid %d|ok|\" ('|' = newline)",
			     k, child_pid[k], buf, child_pid[k]);
		}
	}
	for (k = 1; k <= NCHILD; k++) {
		do
			w = waitpid(child_pid[k], &status, 0);
		while (w < 0 && errno == EINTR);
		if (w != child_pid[k])
			fail("waitpid child %d (pid %d): %s", k, child_pid[k],
			     test_strerror(errno));
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			fail("child %d (pid %d) ended with status %#x", k,
			     child_pid[k], status);
	}
	pass();
}
