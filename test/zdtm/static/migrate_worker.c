/*
 * migrate_worker - a multi-threaded process with a pipe and a file that
 * keeps writing its memory while it is migrated (amber migrate).
 *
 * Memory: a cold region (8 MiB, a pattern written before "ready", never
 * again) and, for each of 4 writer threads, its own hot pages rewritten
 * all the time, each with the pattern of its generation (gen[], bumped
 * once the page is done), in a pseudo-random order. Writers block
 * SIGTERM, nap a little every few pages, and thread 0 appends a numbered
 * record to a file every 64 pages.
 *
 * A pipe holds a pattern written before "ready", unread until the end.
 *
 * After SIGTERM each writer writes 16 more pages, then checks every one
 * of its hot pages against its generation; main checks the cold
 * memory, the pipe's contents, and that the file's offset is at its end
 * and the file holds the records 0..n-1 in order. A page restored from
 * the wrong iteration of the pre-copy, or a thread restored with another
 * one's state, shows as a mismatch naming it.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define PAGE		4096
#define WORDS		(PAGE / 8)
#define NTHREADS	4
#define HOT_PAGES	256		/* per thread */
#define COLD		(8 << 20)
#define PIPE_BYTES	3000
#define FILE_NAME	"migrate_worker.data"

struct writer {
	int index;
	uint64_t *hot;
	uint64_t gen[HOT_PAGES];
	uint64_t records;		/* thread 0: records appended */
	char error[256];
};

static struct writer writers[NTHREADS];
static atomic_int stop;
static int file_fd;

static uint64_t word(int t, long page, uint64_t g, long w)
{
	return zdtm_mix(((uint64_t)t << 56) ^ ((uint64_t)page << 40) ^ (g << 12) ^ (uint64_t)w);
}

static void write_page(struct writer *wr, long i)
{
	uint64_t g = wr->gen[i] + 1;
	uint64_t *p = wr->hot + i * WORDS;
	long w;

	for (w = 0; w < WORDS; w++) {
		p[w] = word(wr->index, i, g, w);
		__asm__ volatile("" ::: "memory");
	}
	wr->gen[i] = g;
}

static int check_pages(struct writer *wr)
{
	long i, w;

	for (i = 0; i < HOT_PAGES; i++)
		for (w = 0; w < WORDS; w++)
			if (wr->hot[i * WORDS + w] != word(wr->index, i, wr->gen[i], w)) {
				snprintf(wr->error, sizeof(wr->error),
					 "thread %d: hot page %ld (generation %llu): word %ld wrong",
					 wr->index, i, (unsigned long long)wr->gen[i], w);
				return -1;
			}
	return 0;
}

static void append_record(struct writer *wr)
{
	char rec[32];

	snprintf(rec, sizeof(rec), "record %015llu\n", (unsigned long long)wr->records);
	if (write(file_fd, rec, strlen(rec)) != (ssize_t)strlen(rec)) {
		snprintf(wr->error, sizeof(wr->error), "append record %llu: %m",
			 (unsigned long long)wr->records);
		atomic_store(&stop, 2);
		return;
	}
	wr->records++;
}

static void *run(void *arg)
{
	struct writer *wr = arg;
	struct timespec nap = { 0, 20 * 1000 };
	uint64_t n = (uint64_t)wr->index << 32, after = 0;
	sigset_t set;
	long i;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	for (i = 0; i < HOT_PAGES; i++)
		write_page(wr, i);
	for (;;) {
		int stopped = atomic_load(&stop);

		write_page(wr, (long)(zdtm_mix(n++) % HOT_PAGES));
		if (wr->index == 0 && n % 64 == 0)
			append_record(wr);
		if (stopped && ++after > 16)
			break;
		if (n % 4 == 0)
			nanosleep(&nap, NULL);
	}
	check_pages(wr);
	return NULL;
}

static void stop_hook(void)
{
	atomic_store(&stop, 1);
}

static void check_file(uint64_t records)
{
	char want[32], got[32];
	off_t end = lseek(file_fd, 0, SEEK_CUR);
	uint64_t r;

	if (end != (off_t)(records * 23))
		fail("file offset %lld, want %llu (%llu records)", (long long)end,
		     (unsigned long long)(records * 23), (unsigned long long)records);
	if (lseek(file_fd, 0, SEEK_END) != end)
		fail("file size is not its offset %lld", (long long)end);
	for (r = 0; r < records; r++) {
		snprintf(want, sizeof(want), "record %015llu\n", (unsigned long long)r);
		if (pread(file_fd, got, 23, r * 23) != 23 || memcmp(got, want, 23))
			fail("file record %llu is wrong", (unsigned long long)r);
	}
}

int main(void)
{
	pthread_t th[NTHREADS];
	unsigned char *cold, buf[PIPE_BYTES], want[PIPE_BYTES];
	int p[2], i;

	test_init();
	test_on_stop(stop_hook);
	file_fd = open(FILE_NAME, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (file_fd < 0 || pipe(p))
		fail("open or pipe failed");
	fill_pattern(want, sizeof(want), 0x919e);
	if (write(p[1], want, sizeof(want)) != sizeof(want))
		fail("write the pipe");
	cold = mmap(NULL, COLD, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (cold == MAP_FAILED)
		fail("mmap failed");
	fill_pattern(cold, COLD, 0xc01d);
	for (i = 0; i < NTHREADS; i++) {
		writers[i].index = i;
		writers[i].hot = mmap(NULL, HOT_PAGES * PAGE, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (writers[i].hot == MAP_FAILED)
			fail("mmap failed");
		if (pthread_create(&th[i], NULL, run, &writers[i]))
			fail("pthread_create failed");
	}

	test_ready();
	test_wait_stop();
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < NTHREADS; i++)
		if (writers[i].error[0])
			fail("%s", writers[i].error);
	expect_pattern(cold, COLD, 0xc01d, "cold memory");
	if (read(p[0], buf, sizeof(buf)) != sizeof(buf) || memcmp(buf, want, sizeof(buf)))
		fail("the pipe's contents are wrong");
	check_file(writers[0].records);
	pass();
}
