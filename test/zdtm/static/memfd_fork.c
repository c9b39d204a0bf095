/*
 * memfd_fork - one memfd in a parent and its child, each with mappings of
 * its own.
 *
 * The parent makes memfd "amber-memfd-fork" (2 pages of pattern), keeps
 * its descriptor open and forks a child.  The child maps the memfd
 * MAP_SHARED itself (a mapping the parent does not have) and waits on a
 * pipe; then the parent maps it too, read-only, at another address and
 * seals it against growing.
 *
 * After SIGTERM: the parent writes page 1 through its descriptor and
 * tells the child, which checks that its own mapping shows page 0's
 * pattern and the parent's write, that its inherited descriptor names the
 * memfd and is sealed, and writes page 0 through its mapping; the parent
 * then sees that write through its read-only mapping: one memfd.
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

#define NAME	"amber-memfd-fork"
#define PG	4096UL
#define SEED	0x3e3ff000ULL
#define SEED_P	0x3e3ff001ULL	/* page 1, by the parent after restore */
#define SEED_C	0x3e3ff002ULL	/* page 0, by the child after restore */

static int fd, p2c[2], c2p[2];

static void child_main(void) __attribute__((noreturn));
static void child_main(void)
{
	const char *res = "ok";
	unsigned char *m;
	char link[256], path[64], c;
	ssize_t n;

	m = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		_exit(2);
	while (read(p2c[0], &c, 1) < 0 && errno == EINTR)
		;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	if (strcmp(link, "/memfd:" NAME " (deleted)"))
		res = "FAIL the inherited descriptor is not the memfd";
	else if (fcntl(fd, F_GET_SEALS) != F_SEAL_GROW)
		res = "FAIL the memfd lost its seal";
	else if (pattern_mismatch(m, PG, SEED) >= 0)
		res = "FAIL page 0 differs in the child's mapping";
	else if (pattern_mismatch(m + PG, PG, SEED_P) >= 0)
		res = "FAIL the parent's write does not show in the child's mapping";
	else
		fill_pattern(m, PG, SEED_C);
	if (write(c2p[1], res, strlen(res)) < 0)
		_exit(3);
	_exit(0);
}

int main(void)
{
	static unsigned char buf[2 * PG];
	unsigned char *m;
	char answer[128];
	int status;
	pid_t pid;
	ssize_t n;

	test_init();
	fd = memfd_create(NAME, MFD_ALLOW_SEALING);
	fill_pattern(buf, PG, SEED);
	if (fd < 0 || write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		fail("memfd: %s", test_strerror(errno));
	if (pipe(p2c) || pipe(c2p))
		fail("pipe: %s", test_strerror(errno));
	pid = fork();
	if (pid < 0)
		fail("fork: %s", test_strerror(errno));
	if (pid == 0)
		child_main();
	close(p2c[0]);
	close(c2p[1]);
	m = mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		fail("mmap: %s", test_strerror(errno));
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_GROW))
		fail("F_ADD_SEALS: %s", test_strerror(errno));
	usleep(100000);	/* let the child map it */

	test_ready();
	test_wait_stop();

	expect_pattern(m, PG, SEED, "parent's mapping page 0");
	fill_pattern(buf, PG, SEED_P);
	if (pwrite(fd, buf, PG, PG) != (ssize_t)PG)
		fail("pwrite: %s", test_strerror(errno));
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
	expect_pattern(m, PG, SEED_C, "parent's mapping page 0 after the child wrote it");
	pass();
}
