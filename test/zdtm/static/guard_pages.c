/*
 * guard_pages - guard pages (MADV_GUARD_INSTALL) survive C/R, each
 * process's own (CRIU's maps12): the mm image records them after the
 * VMAs, and restore installs them again once the children are forked.
 *
 * Three written pages of one anonymous mapping, the middle one then made
 * a guard page.  A child forked after inherits the guard, removes it
 * (MADV_GUARD_REMOVE) and writes the middle page.  After SIGTERM: in the
 * parent the outer pages hold their patterns and reading the middle one
 * still raises SIGSEGV; the child, told by SIGUSR1, finds its middle page
 * readable with its pattern, and exits with what it found.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_GUARD_REMOVE
#define MADV_GUARD_REMOVE 103
#endif

#define PG	4096UL
#define SEED	0x6a4d000000ULL	/* + page */

static sigjmp_buf fault_jmp;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(fault_jmp, 1);
}

/* Whether reading *p raises SIGSEGV. */
static int faults(volatile unsigned char *p)
{
	struct sigaction sa, old;
	int faulted = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_segv;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &old))
		fail("sigaction(SIGSEGV): %s", test_strerror(errno));
	if (sigsetjmp(fault_jmp, 1))
		faulted = 1;
	else
		(void)*p;
	sigaction(SIGSEGV, &old, NULL);
	return faulted;
}

static volatile sig_atomic_t checked;

static void on_usr1(int sig)
{
	(void)sig;
	checked = 1;
}

/* child keeps the middle page as data of its own, until SIGUSR1; its exit
 * status says what it found then. */
static void child(unsigned char *p, int ready)
{
	if (madvise(p + PG, PG, MADV_GUARD_REMOVE))
		_exit(10);
	fill_pattern(p + PG, PG, SEED + 7);
	if (signal(SIGUSR1, on_usr1) == SIG_ERR || write(ready, "c", 1) != 1)
		_exit(11);
	while (!checked)
		pause();
	if (faults(p + PG))
		_exit(12);
	expect_pattern(p + PG, PG, SEED + 7, "child's middle page");
	_exit(0);
}

int main(void)
{
	unsigned char *p;
	int ready[2], status;
	pid_t pid;
	char c;

	test_init();
	p = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		fail("mmap: %s", test_strerror(errno));
	fill_pattern(p, PG, SEED);
	fill_pattern(p + PG, PG, SEED + 1);
	fill_pattern(p + 2 * PG, PG, SEED + 2);
	if (madvise(p + PG, PG, MADV_GUARD_INSTALL))
		fail("MADV_GUARD_INSTALL: %s", test_strerror(errno));
	if (!faults(p + PG))
		fail("the guard page reads without a fault");
	if (pipe(ready))
		fail("pipe: %s", test_strerror(errno));
	pid = fork();
	if (pid < 0)
		fail("fork: %s", test_strerror(errno));
	if (pid == 0)
		child(p, ready[1]);
	if (read(ready[0], &c, 1) != 1)
		fail("child did not start");

	test_ready();
	test_wait_stop();

	expect_pattern(p, PG, SEED, "page before the guard page");
	expect_pattern(p + 2 * PG, PG, SEED + 2, "page after the guard page");
	if (!faults(p + PG))
		fail("the guard page reads without a fault: it is gone");
	if (kill(pid, SIGUSR1) || waitpid(pid, &status, 0) != pid)
		fail("child %d: %s", pid, test_strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("child's middle page: status %#x (12: a guard page, not its own data)", status);
	pass();
}
