/*
 * heap_globals - global variables and malloc'ed memory survive C/R.
 *
 * Checks:
 *  - initialised data (.data): one array is modified at run time (dirty
 *    private page), another is left exactly as in the ELF file (clean page);
 *  - zero-initialised data (.bss): one big array gets a pattern, another is
 *    never written and must still read as zeros;
 *  - heap: malloc'ed buffers from 1 byte to 8 MiB (the large ones are
 *    served by mmap() in glibc, the small ones by brk), each filled with a
 *    pattern derived from its own address, with some chunks freed in
 *    between so the allocator has free lists to preserve;
 *  - afterwards the allocator still works (free everything, malloc again).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "zdtm.h"

#define NDATA 1024

/* .data, modified at run time. */
static uint64_t data_dirty[NDATA] = { 1, 2, 3, 4, 5, 6, 7, 8 };
/* .data, never written: must match the initialiser (volatile: really read
 * from memory, not folded into constants). */
static volatile uint32_t data_clean[8] = {
	0xdeadbeef, 0x01234567, 0x89abcdef, 0xfeedface,
	0xcafebabe, 0x0badf00d, 0x8badf00d, 0xfee1dead,
};
static const uint32_t data_clean_expect[8] = {
	0xdeadbeef, 0x01234567, 0x89abcdef, 0xfeedface,
	0xcafebabe, 0x0badf00d, 0x8badf00d, 0xfee1dead,
};
/* .bss: one written, one left zero (1 MiB each, several pages). */
static unsigned char bss_written[1 << 20];
static unsigned char bss_zero[1 << 20];

static const size_t sizes[] = {
	1, 7, 16, 24, 100, 1000, 4096, 4097, 65536,
	200 << 10,		/* above the default mmap threshold (128 KiB) */
	8 << 20,		/* 8 MiB: always mmap()ed */
	33, 3000,
};
#define NBUF (sizeof(sizes) / sizeof(sizes[0]))
static unsigned char *bufs[NBUF];

static uint64_t seed_of(const void *p)
{
	return (uintptr_t)p * 0x9e3779b97f4a7c15ULL;
}

int main(void)
{
	void *holes[8];
	size_t i;

	test_init();

	for (i = 0; i < NDATA; i++)
		data_dirty[i] = zdtm_mix(i);
	fill_pattern(bss_written, sizeof(bss_written), seed_of(bss_written));

	/* Interleave allocations with chunks that are freed again, so that
	 * the heap has holes and non-empty free lists at checkpoint time. */
	for (i = 0; i < NBUF; i++) {
		if (i < 8)
			holes[i] = malloc(50 + 300 * i);
		bufs[i] = malloc(sizes[i]);
		if (!bufs[i])
			fail("malloc(%zu) failed", sizes[i]);
		fill_pattern(bufs[i], sizes[i], seed_of(bufs[i]));
	}
	for (i = 0; i < 8; i += 2)
		free(holes[i]);

	test_ready();
	test_wait_stop();

	for (i = 0; i < NDATA; i++)
		if (data_dirty[i] != zdtm_mix(i))
			fail("data_dirty[%zu] (.data) is %#llx, expected %#llx", i,
			     (unsigned long long)data_dirty[i],
			     (unsigned long long)zdtm_mix(i));
	for (i = 0; i < 8; i++)
		if (data_clean[i] != data_clean_expect[i])
			fail("data_clean[%zu] (.data, never written) is %#x, expected %#x",
			     i, data_clean[i], data_clean_expect[i]);
	expect_pattern(bss_written, sizeof(bss_written), seed_of(bss_written),
		       "bss_written (.bss)");
	expect_zero(bss_zero, sizeof(bss_zero), "bss_zero (.bss, never written)");

	for (i = 0; i < NBUF; i++) {
		char what[64];

		snprintf(what, sizeof(what), "malloc(%zu) buffer #%zu", sizes[i], i);
		expect_pattern(bufs[i], sizes[i], seed_of(bufs[i]), what);
	}

	/* The allocator's own state (free lists, top chunk, mmap'ed chunk
	 * headers) must be consistent too: free everything, allocate again. */
	for (i = 1; i < 8; i += 2)
		free(holes[i]);
	for (i = 0; i < NBUF; i++)
		free(bufs[i]);
	for (i = 0; i < NBUF; i++) {
		unsigned char *p = malloc(sizes[i]);

		if (!p)
			fail("malloc(%zu) after restore failed", sizes[i]);
		fill_pattern(p, sizes[i], i);
		expect_pattern(p, sizes[i], i, "buffer malloc'ed after restore");
		free(p);
	}
	pass();
}
