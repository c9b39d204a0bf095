/*
 * rseq_abort - a thread frozen inside an rseq critical section goes on,
 * after restore, as the kernel would have let it: from the section's
 * abort handler, or inside the section still protected (CRIU's
 * transition/rseq01).
 *
 * The program spins inside a restartable sequence until SIGTERM: at the
 * dump it is all but surely frozen there. Each turn of the loop reads
 * the thread's rseq_cs field, which the kernel clears only when it finds
 * the thread outside a section or moves it to the abort handler: read as
 * zero inside the section means the thread runs there unprotected (a
 * restore that put it back inside after the kernel, returning from the
 * restore's own calls elsewhere, cleared rseq_cs). The handler counts the
 * aborts and enters again.
 * It uses the rseq area glibc registered, or registers its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/rseq.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

#define SIG 0x53053053 /* what glibc registers on x86-64 */

extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

static struct rseq own __attribute__((aligned(32)));

/* The thread's rseq area: glibc's, or ours once registered. */
static volatile struct rseq *rseq_area(void)
{
	char *tp;

	if (&__rseq_size && __rseq_size > 0) {
		asm("mov %%fs:0, %0" : "=r"(tp));
		return (volatile struct rseq *)(tp + __rseq_offset);
	}
	if (syscall(SYS_rseq, &own, sizeof(own), 0, SIG))
		fail("rseq register: %s", strerror(errno));
	return &own;
}

/*
 * spin runs the section until the stop flag is set: 0 when it saw the
 * flag, 1 when it found rseq_cs cleared inside the section.
 */
static int spin(volatile struct rseq *rs, long *aborts)
{
	for (;;) {
		asm goto(".pushsection __rseq_cs, \"aw\"\n\t"
			 ".balign 32\n\t"
			 "3:\n\t"
			 ".long 0, 0\n\t"                 /* version, flags */
			 ".quad 1f, (2f - 1f), 4f\n\t"    /* start, length, abort */
			 ".popsection\n\t"
			 "leaq 3b(%%rip), %%rax\n\t"
			 "movq %%rax, %[cs]\n\t"
			 "1:\n\t"
			 "cmpq $0, %[cs]\n\t"
			 "je %l[unprotected]\n\t"
			 "cmpl $0, %[stop]\n\t"
			 "je 1b\n\t"
			 "2:\n\t"
			 ".pushsection __rseq_failure, \"ax\"\n\t"
			 ".byte 0x0f, 0xb9, 0x3d\n\t"      /* ud1 <sig>(%rip) */
			 ".long 0x53053053\n\t"
			 "4:\n\t"
			 "jmp %l[aborted]\n\t"
			 ".popsection\n\t"
			 :
			 : [cs] "m"(rs->rseq_cs), [stop] "m"(test_stop_flag)
			 : "rax", "memory", "cc"
			 : aborted, unprotected);
		return 0;
aborted:
		(*aborts)++;
		if (test_stopped())
			return 0;
		continue;
unprotected:
		return 1;
	}
}

int main(void)
{
	volatile struct rseq *rs;
	long aborts = 0;

	test_init();
	rs = rseq_area();
	if ((int32_t)rs->cpu_id < 0)
		fail("rseq area not registered (cpu_id %d)", (int32_t)rs->cpu_id);
	test_ready();
	if (spin(rs, &aborts))
		fail("rseq_cs read 0 inside the critical section after %ld aborts: the section ran unprotected", aborts);
	if ((int32_t)rs->cpu_id < 0)
		fail("rseq area not registered after restore (cpu_id %d)", (int32_t)rs->cpu_id);
	pass();
}
