/*
 * stack_deep - a deep call stack and a grown stack VMA survive C/R.
 *
 * First the stack is grown far down (a few MiB, page by page, via alloca)
 * so that the [stack] VMA is much bigger than at exec.  Then the test
 * recurses 2000 frames deep; every frame fills a local array with a pattern
 * derived from its depth and address.  The deepest frame prints "ready"
 * and waits.  After SIGTERM each frame, while returning, checks its array;
 * so all 2000 return addresses and frames must be intact too.  The [stack]
 * VMA must have the same bounds after restore as before.
 */
#include <alloca.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "zdtm.h"

#define DEPTH		2000
#define FRAME_BYTES	256
#define TOUCH_MAX	(4UL << 20)

static struct vma stack_before;
static int bad_frames, bad_depth = -1;
static long bad_offset;
static size_t touched;	/* bytes of stack touched by touch_stack() */

static struct vma stack_vma(void)
{
	struct vma *v, s;
	int n, i;

	n = read_maps(&v);
	for (i = 0; i < n && strcmp(v[i].path, "[stack]"); i++)
		;
	if (i == n)
		fail("no [stack] line in /proc/self/maps");
	s = v[i];
	free(v);
	return s;
}

/* Grow the stack by touching every page of a big alloca() area, top down. */
static void __attribute__((noinline)) touch_stack(size_t bytes)
{
	volatile unsigned char *p = alloca(bytes);
	size_t off;

	for (off = bytes; off >= 4096; off -= 4096)
		p[off - 1] = 1;
	p[0] = 1;
}

static void __attribute__((noinline)) recurse(int depth)
{
	unsigned char buf[FRAME_BYTES];
	uint64_t seed = zdtm_mix(depth) ^ (uintptr_t)buf;
	long off;

	fill_pattern(buf, sizeof(buf), seed);
	if (depth == DEPTH) {
		stack_before = stack_vma();
		if (stack_before.end - stack_before.start < touched)
			fail("test setup: [stack] VMA is only %lu KiB after "
			     "touching %zu KiB", (stack_before.end -
			     stack_before.start) >> 10, touched >> 10);
		test_ready();
		test_wait_stop();
	} else {
		recurse(depth + 1);
	}
	/* Checked on the way back up: this frame must be intact. */
	off = pattern_mismatch(buf, sizeof(buf), seed);
	if (off >= 0) {
		bad_frames++;
		bad_depth = depth;
		bad_offset = off;
	}
}

int main(void)
{
	struct rlimit rl;
	struct vma now;

	test_init();

	/* Stay well inside RLIMIT_STACK. */
	if (getrlimit(RLIMIT_STACK, &rl))
		fail("getrlimit(RLIMIT_STACK) failed");
	touched = TOUCH_MAX;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 2 < touched)
		touched = rl.rlim_cur / 2;
	touch_stack(touched);

	recurse(1);

	if (bad_frames)
		fail("%d of %d stack frames lost their local array; e.g. the frame "
		     "at depth %d differs at byte %ld", bad_frames, DEPTH,
		     bad_depth, bad_offset);
	now = stack_vma();
	if (now.start != stack_before.start || now.end != stack_before.end)
		fail("[stack] VMA is %lx-%lx (%lu KiB), expected %lx-%lx (%lu KiB)",
		     now.start, now.end, (now.end - now.start) >> 10,
		     stack_before.start, stack_before.end,
		     (stack_before.end - stack_before.start) >> 10);
	pass();
}
