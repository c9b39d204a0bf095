/*
 * counter - a CPU-bound process is checkpointed in the middle of a busy loop.
 *
 * The loop keeps its state in registers: a counter n and two running sums,
 * s1 = 1 + 2 + ... + n and s2 = 1^2 + 2^2 + ... + n^2 (mod 2^64).  The stop
 * flag is only checked every BLOCK iterations.  After SIGTERM the sums must
 * match the closed forms for the final n (so no register was lost or
 * corrupted), and n must be larger than it was when "ready" was printed
 * (the loop kept running and did not restart from an old state).
 */
#include <stdint.h>

#include "zdtm.h"

#define BLOCK (1 << 16)

/* 1 + 2 + ... + n  mod 2^64, computed exactly. */
static uint64_t sum1(uint64_t n)
{
	uint64_t a = n, b = n + 1;

	if (a % 2 == 0)
		a /= 2;
	else
		b /= 2;
	return a * b;
}

/* 1^2 + ... + n^2 = n(n+1)(2n+1)/6  mod 2^64, computed exactly. */
static uint64_t sum2(uint64_t n)
{
	uint64_t a = n, b = n + 1, c = 2 * n + 1;

	if (a % 2 == 0)
		a /= 2;
	else
		b /= 2;
	if (a % 3 == 0)
		a /= 3;
	else if (b % 3 == 0)
		b /= 3;
	else
		c /= 3;
	return a * b * c;
}

int main(void)
{
	uint64_t n = 0, s1 = 0, s2 = 0, n_ready;
	int i;

	test_init();

	/* Warm up so the first checkpoint sees a non-trivial state. */
	for (i = 0; i < BLOCK; i++) {
		n++;
		s1 += n;
		s2 += n * n;
		/* Keep the loop real: no closed-form or vectorised rewrite. */
		__asm__ volatile("" : "+r"(n), "+r"(s1), "+r"(s2));
	}
	n_ready = n;
	test_ready();

	while (!test_stopped()) {
		for (i = 0; i < BLOCK; i++) {
			n++;
			s1 += n;
			s2 += n * n;
			__asm__ volatile("" : "+r"(n), "+r"(s1), "+r"(s2));
		}
	}

	if (n <= n_ready)
		fail("counter did not grow: %llu at ready, %llu at stop",
		     (unsigned long long)n_ready, (unsigned long long)n);
	if (n % BLOCK)
		fail("counter %llu is not a multiple of the block size %d: the "
		     "inner loop state is inconsistent", (unsigned long long)n,
		     BLOCK);
	if (s1 != sum1(n))
		fail("running sum of 1..%llu is %#llx, expected %#llx",
		     (unsigned long long)n, (unsigned long long)s1,
		     (unsigned long long)sum1(n));
	if (s2 != sum2(n))
		fail("running sum of squares 1..%llu is %#llx, expected %#llx",
		     (unsigned long long)n, (unsigned long long)s2,
		     (unsigned long long)sum2(n));
	pass();
}
