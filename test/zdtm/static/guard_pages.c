/*
 * guard_pages - a process with guard pages (MADV_GUARD_INSTALL), which
 * amber cannot dump yet (its images have no place for them, and a
 * restore without them would let the process use memory that faulted):
 * the dump must be refused, naming them, and the process must go on
 * running as it was.
 *
 * Three written pages of one anonymous mapping, the middle one then made
 * a guard page.  After SIGTERM: the outer pages hold their patterns and
 * reading the middle one still raises SIGSEGV.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>

#include "zdtm.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
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

int main(void)
{
	unsigned char *p;

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

	test_ready();
	test_wait_stop();

	expect_pattern(p, PG, SEED, "page before the guard page");
	expect_pattern(p + 2 * PG, PG, SEED + 2, "page after the guard page");
	if (!faults(p + PG))
		fail("the guard page reads without a fault: it is gone");
	pass();
}
