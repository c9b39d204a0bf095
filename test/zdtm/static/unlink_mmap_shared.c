/*
 * unlink_mmap_shared - deleted files kept mapped, as Python's
 * multiprocessing keeps its POSIX semaphores: files of /dev/shm mapped
 * MAP_SHARED by a parent and its child, each with a mapping of its own,
 * then unlinked; and a deleted file of the test directory mapped
 * MAP_PRIVATE with some pages written.
 *
 * The parent forks a child first.  Then the parent creates two POSIX
 * semaphores (sem_open) and a 2-page data file in /dev/shm; the child
 * opens them by name and maps the data file MAP_SHARED itself; once it
 * has, the parent maps the data file too, keeps a descriptor of it open,
 * and unlinks all three (sem_unlink, unlink).  The parent also maps a
 * 4-page file of its directory MAP_PRIVATE, writes pages 0 and 2 (copied
 * on write), leaves 1 and 3 as the file has them, maps page 1 of the same
 * file MAP_SHARED as well, and unlinks it.  The child also maps a file
 * of the directory that stays (unlink_mmap_shared.keep: a test changes it
 * to make a restore fail in the child, once the parent is restored and
 * maps the ghosts).  The child waits in sem_wait.
 *
 * After SIGTERM the parent checks every page, writes through the shared
 * mapping of the private file's page 1 and sees it in the private
 * mapping (the page was never copied: both map one inode), writes page 1
 * of the data file through its descriptor and sees it in its mapping,
 * posts the first semaphore; the child wakes, checks that its mapping
 * shows the parent's writes, writes page 0 and posts the second
 * semaphore, which the parent waits for (10 s at most) before it checks
 * the child's write.  Finally no file of the test is left in /dev/shm or
 * in the test directory (the restore made and removed its ghosts): none
 * by the names the files had, nor by those their maps showed before the
 * dump (a semaphore's is glibc's temporary sem.XXXXXX), in either
 * process.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define PG		4096UL
#define SEED		0x5e3a0000ULL	/* data page i: SEED + i */
#define SEED_FD		0x5e3a0100ULL	/* data page 1, through the fd after restore */
#define SEED_CHILD	0x5e3a0200ULL	/* data page 0, by the child after restore */
#define SEED_FILE	0x5e3a0300ULL	/* private file page i: SEED_FILE + i */
#define SEED_COW	0x5e3a0400ULL	/* private page i written: SEED_COW + i */
#define SEED_SHARED	0x5e3a0500ULL	/* private file page 1, through MAP_SHARED */
#define PRIV_PAGES	4

static char prefix[64];		/* names in /dev/shm start with it */
static char sem_a[80], sem_b[80], data_path[128];
static const char *priv_path = "unlink_mmap_shared.priv";
static const char *keep_path = "unlink_mmap_shared.keep";
static int p2c[2], c2p[2];

/* The deleted files a process maps, as its maps show them before the
 * dump (a semaphore's is glibc's temporary name, sem.XXXXXX). */
#define MAX_DELETED	16
static char deleted[MAX_DELETED][256];
static int ndeleted;

static unsigned char *map_data(void)
{
	unsigned char *m;
	int fd = open(data_path, O_RDWR);

	if (fd < 0)
		fail("open %s: %s", data_path, test_strerror(errno));
	m = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		fail("mmap %s: %s", data_path, test_strerror(errno));
	close(fd);
	return m;
}

static void wait_byte(int fd)
{
	char c;
	ssize_t n;

	do
		n = read(fd, &c, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		fail("no byte on the pipe: %s", n < 0 ? test_strerror(errno) : "EOF");
}

static int sem_wait_intr(sem_t *s)
{
	int r;

	do
		r = sem_wait(s);
	while (r < 0 && errno == EINTR);
	return r;
}

/* record_deleted notes the deleted files the process maps. */
static void record_deleted(void)
{
	static const char suffix[] = " (deleted)";
	struct vma *v;
	int i, n = read_maps(&v);

	for (i = 0; i < n; i++) {
		size_t len = strlen(v[i].path);

		if (v[i].path[0] != '/' || len < sizeof(suffix) ||
		    strcmp(v[i].path + len - (sizeof(suffix) - 1), suffix))
			continue;
		if (ndeleted == MAX_DELETED)
			fail("more than %d mappings of deleted files", MAX_DELETED);
		snprintf(deleted[ndeleted++], sizeof(deleted[0]), "%.*s",
			 (int)(len - (sizeof(suffix) - 1)), v[i].path);
	}
	free(v);
}

static void check_gone(const char *dir, const char *start);

/* check_deleted_gone fails if a deleted file recorded, or its ghost, is
 * in its directory again. */
static void check_deleted_gone(void)
{
	char dir[256];
	int i;

	for (i = 0; i < ndeleted; i++) {
		char *slash = strrchr(deleted[i], '/');

		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - deleted[i]), deleted[i]);
		check_gone(dir[0] ? dir : "/", slash + 1);
	}
}

static void child_main(void) __attribute__((noreturn));
static void child_main(void)
{
	sem_t *a, *b;
	unsigned char *m, *keep;
	int fd;

	close(p2c[1]);
	close(c2p[0]);
	wait_byte(p2c[0]);
	a = sem_open(sem_a, 0);
	b = sem_open(sem_b, 0);
	if (a == SEM_FAILED || b == SEM_FAILED)
		fail("child: sem_open: %s", test_strerror(errno));
	m = map_data();
	fd = open(keep_path, O_RDONLY);
	if (fd < 0)
		fail("child: open %s: %s", keep_path, test_strerror(errno));
	keep = mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0);
	if (keep == MAP_FAILED)
		fail("child: mmap %s: %s", keep_path, test_strerror(errno));
	close(fd);
	record_deleted();
	if (write(c2p[1], "k", 1) != 1)
		fail("child: write: %s", test_strerror(errno));
	close(p2c[0]);
	close(c2p[1]);

	if (sem_wait_intr(a))
		fail("child: sem_wait: %s", test_strerror(errno));
	if (memcmp(keep, "keep", 4))
		fail("child: %s mapped does not start with \"keep\"", keep_path);
	expect_pattern(m, PG, SEED, "child: data page 0 (its own MAP_SHARED mapping)");
	expect_pattern(m + PG, PG, SEED_FD, "child: data page 1 written by the parent through its fd (one inode?)");
	fill_pattern(m, PG, SEED_CHILD);
	check_deleted_gone();
	if (sem_post(b))
		fail("child: sem_post: %s", test_strerror(errno));
	_exit(0);
}

/* setup_private maps the private file: pages 0 and 2 copied on write, 1
 * and 3 as the file has them, and page 1 MAP_SHARED as well. */
static void setup_private(unsigned char **priv, unsigned char **shared)
{
	unsigned char buf[PG];
	int fd, i;

	fd = open(priv_path, O_RDWR | O_CREAT | O_TRUNC, 0640);
	if (fd < 0)
		fail("create %s: %s", priv_path, test_strerror(errno));
	for (i = 0; i < PRIV_PAGES; i++) {
		fill_pattern(buf, PG, SEED_FILE + i);
		if (pwrite(fd, buf, PG, i * PG) != (ssize_t)PG)
			fail("write %s: %s", priv_path, test_strerror(errno));
	}
	*priv = mmap(NULL, PRIV_PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	*shared = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PG);
	if (*priv == MAP_FAILED || *shared == MAP_FAILED)
		fail("mmap %s: %s", priv_path, test_strerror(errno));
	fill_pattern(*priv, PG, SEED_COW);
	fill_pattern(*priv + 2 * PG, PG, SEED_COW + 2);
	if ((*priv)[PG + 5] != pattern_byte(5, SEED_FILE + 1))
		fail("private page 1 before the dump");
	if (unlink(priv_path))
		fail("unlink %s: %s", priv_path, test_strerror(errno));
	close(fd);
}

static void check_private(unsigned char *priv, unsigned char *shared)
{
	char what[64];
	int i;

	for (i = 0; i < PRIV_PAGES; i++) {
		snprintf(what, sizeof(what), "private page %d (%s)", i, i % 2 ? "the file's" : "copied on write");
		expect_pattern(priv + i * PG, PG, i % 2 ? SEED_FILE + i : SEED_COW + i, what);
	}
	expect_pattern(shared, PG, SEED_FILE + 1, "MAP_SHARED page 1 of the private file");
	fill_pattern(shared, PG, SEED_SHARED);
	expect_pattern(priv + PG, PG, SEED_SHARED,
		       "private page 1 after a write through MAP_SHARED (not the same inode?)");
	expect_pattern(priv + 3 * PG, PG, SEED_FILE + 3, "private page 3 after the shared write");
}

/* check_gone fails if dir holds an entry whose name starts with start:
 * the file or its ghost (NAME.amber.ID.ghost). */
static void check_gone(const char *dir, const char *start)
{
	struct dirent *e;
	DIR *d = opendir(dir);

	if (!d)
		fail("opendir %s: %s", dir, test_strerror(errno));
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, start, strlen(start)))
			fail("%s/%s is left behind", dir, e->d_name);
	closedir(d);
}

int main(void)
{
	unsigned char *data, *priv, *shared, buf[PG];
	struct timespec until;
	struct stat st;
	sem_t *a, *b;
	pid_t child;
	int fd, status;

	test_init();
	snprintf(prefix, sizeof(prefix), "amber-umap-%d", getpid());
	snprintf(sem_a, sizeof(sem_a), "/%s-a", prefix);
	snprintf(sem_b, sizeof(sem_b), "/%s-b", prefix);
	snprintf(data_path, sizeof(data_path), "/dev/shm/%s-data", prefix);
	if (pipe(p2c) || pipe(c2p))
		fail("pipe: %s", test_strerror(errno));
	fd = open(keep_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "keep", 4) != 4)
		fail("create %s: %s", keep_path, test_strerror(errno));
	close(fd);
	child = fork();
	if (child < 0)
		fail("fork: %s", test_strerror(errno));
	if (child == 0)
		child_main();
	close(p2c[0]);
	close(c2p[1]);

	a = sem_open(sem_a, O_CREAT | O_EXCL, 0600, 0);
	b = sem_open(sem_b, O_CREAT | O_EXCL, 0600, 0);
	if (a == SEM_FAILED || b == SEM_FAILED)
		fail("sem_open: %s", test_strerror(errno));
	fd = open(data_path, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || ftruncate(fd, 2 * PG))
		fail("create %s: %s", data_path, test_strerror(errno));
	data = map_data();
	fill_pattern(data, PG, SEED);
	fill_pattern(data + PG, PG, SEED + 1);
	if (write(p2c[1], "g", 1) != 1)
		fail("write: %s", test_strerror(errno));
	wait_byte(c2p[0]);
	close(p2c[1]);
	close(c2p[0]);
	if (sem_unlink(sem_a) || sem_unlink(sem_b) || unlink(data_path))
		fail("unlink: %s", test_strerror(errno));
	setup_private(&priv, &shared);
	record_deleted();
	if (ndeleted < 5)
		fail("%d mappings of deleted files, want at least 5", ndeleted);

	test_ready();
	test_wait_stop();

	check_private(priv, shared);
	expect_pattern(data, PG, SEED, "data page 0");
	expect_pattern(data + PG, PG, SEED + 1, "data page 1");
	if (fstat(fd, &st) || st.st_nlink != 0 || st.st_size != (off_t)(2 * PG))
		fail("the data file's fd: nlink %lu size %lld, want 0 and %lu",
		     (unsigned long)st.st_nlink, (long long)st.st_size, 2 * PG);
	fill_pattern(buf, PG, SEED_FD);
	if (pwrite(fd, buf, PG, PG) != (ssize_t)PG)
		fail("pwrite through the fd: %s", test_strerror(errno));
	expect_pattern(data + PG, PG, SEED_FD, "data page 1 after a write through the fd (not the same inode?)");

	if (sem_post(a))
		fail("sem_post: %s", test_strerror(errno));
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	while (sem_timedwait(b, &until))
		if (errno != EINTR)
			fail("the child never posted the second semaphore: %s", test_strerror(errno));
	expect_pattern(data, PG, SEED_CHILD, "data page 0 written by the child (not the same inode?)");
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("child %d ended with status %#x", child, status);
	snprintf((char *)buf, sizeof(buf), "sem.%s", prefix);
	check_gone("/dev/shm", (char *)buf);
	check_gone("/dev/shm", prefix);
	check_gone(".", "unlink_mmap_shared.priv");
	check_deleted_gone();
	pass();
}
