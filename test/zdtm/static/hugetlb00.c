/*
 * hugetlb00 - anonymous hugetlb memory (MAP_HUGETLB, the default huge
 * page size), private and shared, in a parent and its child (what CRIU's
 * maps09 checks, and more).
 *
 * The parent maps two huge pages MAP_SHARED, writes a pattern into 4 KiB
 * at offsets 0, H-4K and H (H: the huge page size), then makes the second
 * huge page read-only: one object in two mappings.  It maps two huge
 * pages MAP_PRIVATE and writes the first 4 KiB; the second huge page is
 * never touched.  It forks a child, which inherits both, writes its own
 * pattern into its copy of the private page (copy on write) and sleeps in
 * read() on a pipe.
 *
 * Before "ready" the parent records the maps lines of the three areas
 * (range, perms, device, path), which must be the same after SIGTERM,
 * with "ht" in VmFlags and the huge page size as KernelPageSize, both
 * shared mappings of one inode.  It checks the patterns and that the
 * untouched private huge page reads zero, writes a new pattern at offset
 * 0 of the shared memory and sends the child a byte.  The child checks it
 * sees that write, the shared pattern at offset H, and its own private
 * page, writes its pattern at offset 4K of the shared memory and answers
 * "ok"; the parent checks it sees the child's write and that the child
 * exited 0.  (The child never reads untouched private hugetlb memory: it
 * has no reservation for it.)
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

#define PG		4096UL
#define SEED		0x4a9e0000ULL	/* + offset / PG */
#define PRIV_SEED	0x4a9e1000ULL
#define CHILD_SEED	0x4a9e2000ULL
#define PARENT_SEED	0x4a9e3000ULL
#define CHILD_SHM_SEED	0x4a9e4000ULL

static unsigned long hp;	/* huge page size */
static unsigned char *shm, *priv;
static int p2c[2], c2p[2];

struct mapline {
	unsigned long start, end, ino;
	unsigned int major, minor;
	char perms[5];
	char path[64];
	unsigned long kpage;	/* KernelPageSize, bytes */
	int ht;			/* "ht" in VmFlags */
};

/* The smaps entry of the mapping starting at addr. */
static struct mapline mapline(void *addr)
{
	struct mapline m = { 0 }, cur = { 0 };
	char buf[512], flags[256];
	unsigned long kb;
	int found = 0;
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		fail("open /proc/self/smaps: %s", test_strerror(errno));
	while (fgets(buf, sizeof(buf), f)) {
		struct mapline l = { 0 };
		int n = sscanf(buf, "%lx-%lx %4s %*x %x:%x %lu %63[^\n]", &l.start, &l.end, l.perms,
			       &l.major, &l.minor, &l.ino, l.path);

		if (n >= 6) {
			if (found)
				break;
			cur = l;
			found = cur.start == (unsigned long)addr;
			continue;
		}
		if (!found)
			continue;
		if (sscanf(buf, "KernelPageSize: %lu kB", &kb) == 1)
			cur.kpage = kb * 1024;
		if (sscanf(buf, "VmFlags: %255[^\n]", flags) == 1)
			cur.ht = strstr(flags, "ht ") != NULL;
	}
	fclose(f);
	if (!found)
		fail("no mapping starts at %p", addr);
	m = cur;
	return m;
}

static void child_say(const char *msg, int code) __attribute__((noreturn));
static void child_say(const char *msg, int code)
{
	if (write(c2p[1], msg, strlen(msg)) < 0)
		_exit(3);
	_exit(code);
}

static void child_main(void) __attribute__((noreturn));
static void child_main(void)
{
	char buf[1];
	ssize_t n;

	fill_pattern(priv, PG, CHILD_SEED);
	do
		n = read(p2c[0], buf, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		child_say("FAIL no go byte from the parent", 1);
	if (pattern_mismatch(shm, PG, PARENT_SEED) >= 0)
		child_say("FAIL the parent's write to shared hugetlb memory is not visible", 1);
	if (pattern_mismatch(shm + hp, PG, SEED + hp / PG) >= 0)
		child_say("FAIL shared hugetlb memory at offset H differs", 1);
	if (pattern_mismatch(priv, PG, CHILD_SEED) >= 0)
		child_say("FAIL the child's private hugetlb page differs", 1);
	fill_pattern(shm + PG, PG, CHILD_SHM_SEED);
	child_say("ok", 0);
}

static unsigned long huge_page_size(void)
{
	char buf[256];
	unsigned long kb = 0;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		fail("open /proc/meminfo: %s", test_strerror(errno));
	while (fgets(buf, sizeof(buf), f))
		if (sscanf(buf, "Hugepagesize: %lu kB", &kb) == 1)
			break;
	fclose(f);
	if (!kb)
		fail("no Hugepagesize in /proc/meminfo");
	return kb * 1024;
}

static void setup(void)
{
	unsigned long off[] = { 0, hp - PG, hp };
	size_t i;

	shm = mmap(NULL, 2 * hp, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (shm == MAP_FAILED)
		fail("mmap 2 shared huge pages: %s (free huge pages?)", test_strerror(errno));
	priv = mmap(NULL, 2 * hp, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (priv == MAP_FAILED)
		fail("mmap 2 private huge pages: %s (free huge pages?)", test_strerror(errno));
	for (i = 0; i < sizeof(off) / sizeof(off[0]); i++)
		fill_pattern(shm + off[i], PG, SEED + off[i] / PG);
	if (mprotect(shm + hp, hp, PROT_READ))
		fail("mprotect: %s", test_strerror(errno));
	fill_pattern(priv, PG, PRIV_SEED);
}

static void expect_line(const struct mapline *was, void *addr, const char *what)
{
	struct mapline now = mapline(addr);

	if (now.end != was->end || strcmp(now.perms, was->perms) || strcmp(now.path, was->path) ||
	    now.major != was->major || now.minor != was->minor)
		fail("%s: %lx-%lx %s %x:%x %s is now %lx-%lx %s %x:%x %s", what,
		     was->start, was->end, was->perms, was->major, was->minor, was->path,
		     now.start, now.end, now.perms, now.major, now.minor, now.path);
	if (!now.ht || now.kpage != hp)
		fail("%s: VmFlags ht %d, KernelPageSize %lu: want ht and %lu", what, now.ht, now.kpage, hp);
	if (strcmp(now.path, "/anon_hugepage (deleted)"))
		fail("%s: path %s", what, now.path);
}

int main(void)
{
	struct mapline lines[3];
	unsigned char *addrs[3];
	const char *names[3] = { "shared", "shared read-only", "private" };
	char buf[128];
	int i, status;
	pid_t pid;
	ssize_t n;

	test_init();
	hp = huge_page_size();
	setup();
	if (pipe(p2c) || pipe(c2p))
		fail("pipe: %s", test_strerror(errno));
	pid = fork();
	if (pid < 0)
		fail("fork: %s", test_strerror(errno));
	if (pid == 0)
		child_main();
	close(p2c[0]);
	close(c2p[1]);
	addrs[0] = shm;
	addrs[1] = shm + hp;
	addrs[2] = priv;
	for (i = 0; i < 3; i++)
		lines[i] = mapline(addrs[i]);
	/* Let the child write its private page before the checkpoint. */
	usleep(100000);

	test_ready();
	test_wait_stop();

	for (i = 0; i < 3; i++)
		expect_line(&lines[i], addrs[i], names[i]);
	if (mapline(shm).ino != mapline(shm + hp).ino)
		fail("the two shared mappings map different objects");
	expect_pattern(shm, PG, SEED, "shared at 0");
	expect_pattern(shm + hp - PG, PG, SEED + (hp - PG) / PG, "shared at H-4K");
	expect_pattern(shm + hp, PG, SEED + hp / PG, "shared at H");
	expect_zero(shm + PG, PG, "shared at 4K");
	expect_pattern(priv, PG, PRIV_SEED, "private page");
	expect_zero(priv + hp, PG, "untouched private huge page");
	expect_zero(priv + 2 * hp - PG, PG, "untouched private huge page end");

	fill_pattern(shm, PG, PARENT_SEED);
	if (write(p2c[1], "1", 1) != 1)
		fail("write to the child: %s", test_strerror(errno));
	memset(buf, 0, sizeof(buf));
	do
		n = read(c2p[0], buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		fail("no answer from the child: %s", n ? test_strerror(errno) : "EOF");
	if (strcmp(buf, "ok"))
		fail("child: %s", buf);
	if (waitpid(pid, &status, 0) != pid)
		fail("waitpid: %s", test_strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("child exited with status %#x", status);
	expect_pattern(shm + PG, PG, CHILD_SHM_SEED, "the child's write to shared memory");
	pass();
}
