/*
 * file_shared_map - MAP_SHARED mappings of a regular file, in a parent and
 * in its child, whose writes reach the file.
 *
 * file_shared_map.data (4 pages) is written with a pattern, then mapped
 * MAP_SHARED read-write by the parent, whose page 1 it overwrites through
 * the mapping (never msync'ed); the descriptor is closed.  A forked child
 * unmaps what it inherited, maps the file again itself, read-write, and
 * waits on a pipe.
 *
 * After SIGTERM: the parent's mapping and read() of the file both show
 * the pattern with the new page 1.  The parent writes page 2 through its
 * mapping; read() sees it.  It tells the child, which checks it sees the
 * parent's pages 1 and 2 through its own mapping, writes page 3 through
 * it and answers; the parent sees page 3 through its mapping and read().
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

#define FILE_NAME	"file_shared_map.data"
#define PG		4096UL
#define PAGES		4
#define SEED		0xf5a0000ULL	/* + page */
#define SEED1		0xf5a1001ULL	/* page 1, written before the checkpoint */
#define SEED2		0xf5a2002ULL	/* page 2, by the parent after restore */
#define SEED3		0xf5a3003ULL	/* page 3, by the child after restore */

static unsigned char *map;
static int p2c[2], c2p[2];

static void read_page(int page, unsigned char *buf)
{
	int fd = open(FILE_NAME, O_RDONLY);

	if (fd < 0 || pread(fd, buf, PG, page * PG) != (ssize_t)PG)
		fail("read %s page %d: %s", FILE_NAME, page, test_strerror(errno));
	close(fd);
}

static void child_main(void) __attribute__((noreturn));
static void child_main(void)
{
	unsigned char *m;
	const char *res = "ok";
	char c;
	int fd;

	munmap(map, PAGES * PG);
	fd = open(FILE_NAME, O_RDWR);
	if (fd < 0)
		_exit(2);
	m = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		_exit(2);
	while (read(p2c[0], &c, 1) < 0 && errno == EINTR)
		;
	if (pattern_mismatch(m + PG, PG, SEED1) >= 0)
		res = "FAIL page 1 (written before the checkpoint) differs";
	else if (pattern_mismatch(m + 2 * PG, PG, SEED2) >= 0)
		res = "FAIL page 2 (written by the parent after restore) differs";
	else
		fill_pattern(m + 3 * PG, PG, SEED3);
	if (write(c2p[1], res, strlen(res)) < 0)
		_exit(3);
	_exit(0);
}

int main(void)
{
	static unsigned char buf[PAGES * PG];
	char answer[128];
	int fd, i, status;
	pid_t pid;
	ssize_t n;

	test_init();
	for (i = 0; i < PAGES; i++)
		fill_pattern(buf + i * PG, PG, SEED + i);
	fd = open(FILE_NAME, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		fail("create %s: %s", FILE_NAME, test_strerror(errno));
	map = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		fail("mmap: %s", test_strerror(errno));
	close(fd);
	fill_pattern(map + PG, PG, SEED1);
	if (pipe(p2c) || pipe(c2p))
		fail("pipe: %s", test_strerror(errno));
	pid = fork();
	if (pid < 0)
		fail("fork: %s", test_strerror(errno));
	if (pid == 0)
		child_main();
	close(p2c[0]);
	close(c2p[1]);

	test_ready();
	test_wait_stop();

	expect_pattern(map, PG, SEED, "mapping page 0");
	expect_pattern(map + PG, PG, SEED1, "mapping page 1");
	read_page(1, buf);
	expect_pattern(buf, PG, SEED1, "file page 1 (written through the mapping before the checkpoint)");
	fill_pattern(map + 2 * PG, PG, SEED2);
	read_page(2, buf);
	expect_pattern(buf, PG, SEED2, "file page 2 (written through the mapping after restore)");

	if (write(p2c[1], "g", 1) != 1)
		fail("write to child: %s", test_strerror(errno));
	memset(answer, 0, sizeof(answer));
	do
		n = read(c2p[0], answer, sizeof(answer) - 1);
	while (n < 0 && errno == EINTR);
	if (strcmp(answer, "ok"))
		fail("child (pid %d) says \"%s\"", pid, answer);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("child (pid %d) ended with status %#x", pid, status);
	expect_pattern(map + 3 * PG, PG, SEED3, "mapping page 3 (written by the child)");
	read_page(3, buf);
	expect_pattern(buf, PG, SEED3, "file page 3 (written by the child)");
	pass();
}
