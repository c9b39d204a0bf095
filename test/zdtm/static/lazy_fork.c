/*
 * lazy_fork - a process that forks as soon as it runs again after a lazy
 * restore (once a file go.now appears in its directory), while most of
 * its 64 MiB (LAZY_MIB in the environment to change it) of patterned
 * memory is still to come: its child forks too, each writes a part of its copy, and all three
 * check every page (theirs changed, the rest the pattern).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

static unsigned char *mem;
static size_t size, part;

/* check requires the pattern everywhere but in part mine (-1: none),
 * which holds the pattern of seed 0x100 + mine. */
static void check(int mine)
{
	int i;

	for (i = 0; i < 4; i++) {
		if (i == mine)
			expect_pattern(mem + i * part, part, 0x100 + i, "the part it wrote");
		else
			expect_pattern(mem + i * part, part, 0xf0 + i, "memory");
	}
}

/* wait_ok waits for pid to exit 0. The test's SIGTERM may come while
 * the children still check (the daemon is done once every page is in,
 * not once they checked them): the wait goes on through EINTR. */
static void wait_ok(pid_t pid)
{
	int status;
	pid_t w;

	while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
		;
	if (w != pid)
		fail("waitpid(%d): %s", pid, test_strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("child %d ended with status %#x", pid, status);
}

int main(void)
{
	const char *env = getenv("LAZY_MIB");
	pid_t child, grandchild = -1;
	int i;

	test_init();
	size = (env ? strtoul(env, NULL, 10) : 64) << 20;
	part = size / 4;
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		fail("mmap failed");
	for (i = 0; i < 4; i++)
		fill_pattern(mem + i * part, part, 0xf0 + i);

	test_ready();
	/* The test makes go.now before the restore: the restored process
	 * finds it at once, before the daemon brought much in. */
	while (access("go.now", F_OK) != 0 && !test_stopped())
		usleep(1000);

	child = fork();
	if (child < 0)
		fail("fork failed");
	if (child == 0) {
		grandchild = fork();
		if (grandchild < 0)
			fail("fork failed");
		if (grandchild == 0) {
			fill_pattern(mem + 2 * part, part, 0x100 + 2);
			check(2);
			_exit(0);
		}
		fill_pattern(mem + 1 * part, part, 0x100 + 1);
		check(1);
		wait_ok(grandchild);
		_exit(0);
	}
	check(-1);
	wait_ok(child);
	test_wait_stop();
	pass();
}
