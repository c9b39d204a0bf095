/*
 * maps_flags - mmap flags and madvise advice that smaps shows in VmFlags
 * survive C/R (what CRIU's maps02 checks).
 *
 * Areas (4 pages each, in one reserved region, separated by one-page
 * holes so they cannot merge):
 *   locked_seq      MAP_LOCKED, MADV_SEQUENTIAL            lo sr
 *   noreserve_rand  MAP_NORESERVE, MADV_RANDOM             nr rr
 *   dontdump_fork   MADV_DONTDUMP, MADV_DONTFORK           dd dc
 *   mlock_split     pages 1-2 mlock()ed: three VMAs        - / lo / -
 *   huge_merge      MADV_HUGEPAGE, MADV_MERGEABLE          hg mg
 *   wipe_nohuge     MADV_WIPEONFORK, MADV_NOHUGEPAGE       wf nh
 *   droppable       MAP_DROPPABLE (kernel 6.11+)           dp nr wf dd
 *
 * Every area but droppable is written with a pattern.  Before "ready" the
 * range, perms and the VmFlags above of every VMA in the region are
 * recorded, and VmLck of /proc/self/status; after SIGTERM they must be
 * the same and the contents intact (droppable pages may have been
 * dropped by the kernel: each holds the pattern or zeroes).  Advice the
 * kernel does not support here (EINVAL) is left out.
 *
 * A child forked after setup mlock()s its copy of locked_seq (fork does
 * not pass VM_LOCKED on, so the child's VMA is then the same as its
 * parent's, yet locked only because the child locked it) and records its
 * own mappings and VmLck.  After SIGTERM the parent sends it a byte; it
 * checks they are unchanged and locked_seq holds its pattern, and
 * answers "ok".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE	0x08
#endif

#define PG		4096UL
#define AREA_PAGES	4UL
#define AREA_SIZE	(AREA_PAGES * PG)
#define SLOT		(AREA_SIZE + PG)
#define SEED		0x3a9f1a6ULL	/* + area index */

enum { LOCKED_SEQ, NORESERVE_RAND, DONTDUMP_FORK, MLOCK_SPLIT, HUGE_MERGE,
       WIPE_NOHUGE, DROPPABLE, NAREAS };
static const char *names[NAREAS] = {
	"locked_seq", "noreserve_rand", "dontdump_fork", "mlock_split",
	"huge_merge", "wipe_nohuge", "droppable",
};

/* The VmFlags that record mmap flags or madvise advice. */
static const char *tracked[] = {
	"gd", "lo", "nr", "ht", "dp", "sr", "rr", "dc", "dd", "mg", "hg", "nh", "wf",
};

static unsigned char *region;
static int has_droppable;
static int p2c[2], c2p[2];

static unsigned char *area(int a)
{
	return region + a * SLOT;
}

struct line {
	unsigned long start, end;
	char perms[5];
	char flags[64];	/* the tracked VmFlags, in smaps order */
};
#define MAXLINES 32
static struct line recorded[MAXLINES];
static int nrecorded;
static long recorded_vmlck;

static int is_tracked(const char *tok)
{
	size_t i;

	for (i = 0; i < sizeof(tracked) / sizeof(tracked[0]); i++)
		if (!strcmp(tok, tracked[i]))
			return 1;
	return 0;
}

/* Keep the tracked flags of a "VmFlags:" value. */
static void pick_flags(char *val, char *out, size_t size)
{
	char *tok, *save;

	out[0] = 0;
	for (tok = strtok_r(val, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save))
		if (is_tracked(tok) && strlen(out) + strlen(tok) + 2 < size) {
			strcat(out, tok);
			strcat(out, " ");
		}
}

/* The smaps entries overlapping the region. */
static int snapshot(struct line *out)
{
	unsigned long lo = (unsigned long)region, hi = lo + NAREAS * SLOT;
	unsigned long start = 0, end = 0, s, e;
	char buf[512], perms[5], p[5];
	FILE *f = fopen("/proc/self/smaps", "r");
	int k = 0;

	if (!f)
		fail("open /proc/self/smaps: %s", test_strerror(errno));
	while (fgets(buf, sizeof(buf), f)) {
		if (sscanf(buf, "%lx-%lx %4s", &s, &e, p) == 3) {
			start = s;
			end = e;
			memcpy(perms, p, sizeof(p));
			continue;
		}
		if (strncmp(buf, "VmFlags:", 8) || end <= lo || start >= hi)
			continue;
		if (k == MAXLINES)
			fail("more than %d mappings in the test region", MAXLINES);
		out[k].start = start;
		out[k].end = end;
		memcpy(out[k].perms, perms, sizeof(perms));
		pick_flags(buf + 8, out[k].flags, sizeof(out[k].flags));
		k++;
	}
	fclose(f);
	return k;
}

/* VmLck of /proc/self/status, in kB. */
static long vmlck(void)
{
	char buf[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		fail("open /proc/self/status: %s", test_strerror(errno));
	while (fgets(buf, sizeof(buf), f))
		if (sscanf(buf, "VmLck: %ld kB", &kb) == 1)
			break;
	fclose(f);
	if (kb < 0)
		fail("no VmLck in /proc/self/status");
	return kb;
}

/* Map area a with extra mmap flags; EINVAL (unsupported) leaves it out. */
static int map_area(int a, int flags)
{
	int type = flags & MAP_DROPPABLE ? 0 : MAP_PRIVATE;
	void *p = mmap(area(a), AREA_SIZE, PROT_READ | PROT_WRITE,
		       type | MAP_ANONYMOUS | MAP_FIXED | flags, -1, 0);

	if (p == MAP_FAILED && errno == EINVAL)
		return 0;
	if (p == MAP_FAILED)
		fail("mmap %s: %s", names[a], test_strerror(errno));
	return 1;
}

/* Give area a advice; EINVAL (not supported by this kernel) is ignored. */
static void advise(int a, int advice)
{
	if (madvise(area(a), AREA_SIZE, advice) && errno != EINVAL)
		fail("madvise %s %d: %s", names[a], advice, test_strerror(errno));
}

static void setup(void)
{
	int a;

	region = mmap(NULL, NAREAS * SLOT, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		fail("mmap region: %s", test_strerror(errno));
	if (munmap(region, NAREAS * SLOT))
		fail("munmap region: %s", test_strerror(errno));
	map_area(LOCKED_SEQ, MAP_LOCKED);
	advise(LOCKED_SEQ, MADV_SEQUENTIAL);
	map_area(NORESERVE_RAND, MAP_NORESERVE);
	advise(NORESERVE_RAND, MADV_RANDOM);
	map_area(DONTDUMP_FORK, 0);
	advise(DONTDUMP_FORK, MADV_DONTDUMP);
	advise(DONTDUMP_FORK, MADV_DONTFORK);
	map_area(MLOCK_SPLIT, 0);
	map_area(HUGE_MERGE, 0);
	advise(HUGE_MERGE, MADV_HUGEPAGE);
	advise(HUGE_MERGE, MADV_MERGEABLE);
	map_area(WIPE_NOHUGE, 0);
	advise(WIPE_NOHUGE, MADV_WIPEONFORK);
	advise(WIPE_NOHUGE, MADV_NOHUGEPAGE);
	has_droppable = map_area(DROPPABLE, MAP_DROPPABLE);
	for (a = 0; a < NAREAS; a++)
		if (a != DROPPABLE || has_droppable)
			fill_pattern(area(a), AREA_SIZE, SEED + a);
	if (mlock(area(MLOCK_SPLIT) + PG, 2 * PG))
		fail("mlock: %s", test_strerror(errno));
}

/* Compare the region's mappings with the recorded ones: 0 if the same,
 * else -1 with the difference in msg. */
static int maps_differ(char *msg, size_t size)
{
	struct line now[MAXLINES];
	int n = snapshot(now), i;

	for (i = 0; i < n || i < nrecorded; i++) {
		struct line *w = &recorded[i], *g = &now[i];

		if (i >= n)
			snprintf(msg, size, "mapping %lx-%lx %s [%s] is gone", w->start, w->end, w->perms, w->flags);
		else if (i >= nrecorded)
			snprintf(msg, size, "new mapping %lx-%lx %s [%s]", g->start, g->end, g->perms, g->flags);
		else if (w->start != g->start || w->end != g->end || strcmp(w->perms, g->perms))
			snprintf(msg, size, "mapping %lx-%lx %s is now %lx-%lx %s",
				 w->start, w->end, w->perms, g->start, g->end, g->perms);
		else if (strcmp(w->flags, g->flags))
			snprintf(msg, size, "mapping %lx-%lx: VmFlags [%s] are now [%s]",
				 w->start, w->end, w->flags, g->flags);
		else
			continue;
		return -1;
	}
	return 0;
}

static void check_maps(void)
{
	char msg[256];

	if (maps_differ(msg, sizeof(msg)))
		fail("%s", msg);
}

static void child_say(const char *msg, int code) __attribute__((noreturn));
static void child_say(const char *msg, int code)
{
	if (write(c2p[1], msg, strlen(msg)) < 0)
		_exit(3);
	_exit(code);
}

/* The child: lock locked_seq, record, wait for the parent's byte, check. */
static void child_main(void) __attribute__((noreturn));
static void child_main(void)
{
	char msg[300], buf[1];
	long lck;
	ssize_t n;

	close(p2c[1]);
	close(c2p[0]);
	if (mlock(area(LOCKED_SEQ), AREA_SIZE))
		child_say("FAIL child mlock", 1);
	nrecorded = snapshot(recorded);
	recorded_vmlck = vmlck();
	if (write(c2p[1], "r", 1) != 1)
		_exit(3);
	do
		n = read(p2c[0], buf, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		child_say("FAIL child: no byte from the parent", 1);
	if (maps_differ(msg + 11, sizeof(msg) - 11)) {
		memcpy(msg, "FAIL child ", 11);
		child_say(msg, 1);
	}
	if ((lck = vmlck()) != recorded_vmlck) {
		snprintf(msg, sizeof(msg), "FAIL child: VmLck %ld kB, was %ld kB", lck, recorded_vmlck);
		child_say(msg, 1);
	}
	if (pattern_mismatch(area(LOCKED_SEQ), AREA_SIZE, SEED + LOCKED_SEQ) >= 0)
		child_say("FAIL child: locked_seq differs", 1);
	child_say("ok", 0);
}

/* Fork the child and wait until it has recorded its mappings. */
static pid_t start_child(void)
{
	char buf[1];
	pid_t pid;

	if (pipe(p2c) || pipe(c2p))
		fail("pipe: %s", test_strerror(errno));
	pid = fork();
	if (pid < 0)
		fail("fork: %s", test_strerror(errno));
	if (pid == 0)
		child_main();
	close(p2c[0]);
	close(c2p[1]);
	if (read(c2p[0], buf, 1) != 1 || buf[0] != 'r')
		fail("the child did not start");
	return pid;
}

/* Let the child check itself; fail unless it says "ok" and exits 0. */
static void check_child(pid_t pid)
{
	char buf[512] = { 0 };
	int status;
	ssize_t n;

	if (write(p2c[1], "1", 1) != 1)
		fail("write to the child: %s", test_strerror(errno));
	do
		n = read(c2p[0], buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		fail("no answer from the child");
	if (strcmp(buf, "ok"))
		fail("%s", buf + (strncmp(buf, "FAIL ", 5) ? 0 : 5));
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("child exited with status %#x", status);
}

/* Each droppable page holds its part of the pattern, or zeroes. */
static void check_droppable(void)
{
	unsigned char *p = area(DROPPABLE);
	size_t pg;

	for (pg = 0; pg < AREA_PAGES; pg++) {
		static const unsigned char zero[PG];
		unsigned char want[PG];
		size_t i;

		for (i = 0; i < PG; i++)
			want[i] = pattern_byte(pg * PG + i, SEED + DROPPABLE);
		if (memcmp(p + pg * PG, want, PG) && memcmp(p + pg * PG, zero, PG))
			fail("droppable page %zu holds neither its pattern nor zeroes", pg);
	}
}

int main(void)
{
	int a;
	long lck;
	pid_t child;

	test_init();
	setup();
	child = start_child();
	nrecorded = snapshot(recorded);
	recorded_vmlck = vmlck();
	if (nrecorded < NAREAS + 2 - !has_droppable)
		fail("only %d mappings in the test region", nrecorded);

	test_ready();
	test_wait_stop();

	check_maps();
	if ((lck = vmlck()) != recorded_vmlck)
		fail("VmLck %ld kB, was %ld kB", lck, recorded_vmlck);
	for (a = 0; a < NAREAS; a++) {
		if (a == DROPPABLE) {
			if (has_droppable)
				check_droppable();
			continue;
		}
		expect_pattern(area(a), AREA_SIZE, SEED + a, names[a]);
	}
	check_child(child);
	pass();
}
