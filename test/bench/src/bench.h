/*
 * bench.h - shared helpers for amber's benchmark workloads (test/bench).
 *
 * A workload follows the zdtm protocol: it sets up its state, prints
 * "ready", waits for SIGTERM (during which it is dumped and restored), then
 * checks its state and prints "PASS" (exit 0) or "FAIL: reason" (exit 1).
 * The benchmark refuses a round whose restored workload does not pass.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>
#include <stdint.h>

#define PG 4096UL

/* Install the SIGTERM handler (no SA_RESTART), line-buffer stdout. */
void bench_init(void);

/* Print "ready": the benchmark may dump us from now on. */
void bench_ready(void);

/* Sleep until SIGTERM has been received. */
void bench_wait_stop(void);

/* Non-zero once SIGTERM has been received. */
int bench_stopped(void);

/* Print "PASS" and exit(0). */
void pass(void) __attribute__((noreturn));

/* Print "FAIL: <message>" and exit(1). */
void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* Parse a positive decimal argument or fail(). */
unsigned long arg_ulong(const char *s, const char *what);

/*
 * A page-sized pattern that depends on seed and is never zero in any
 * 8-byte word, so that no written page is a zero page.
 */
void fill_page(void *page, uint64_t seed);

/* fail() unless page holds fill_page(seed)'s pattern. */
void check_page(const void *page, uint64_t seed, const char *what);

/*
 * Count the /proc/self/maps lines inside [lo, hi) whose permissions are
 * perms; fail() if any line straddles the range or is not one page long.
 */
unsigned long count_pages_maps(unsigned long lo, unsigned long hi,
			       const char *perms);

#endif /* BENCH_H */
