/*
 * io_uring_sqpoll - a process with an io_uring whose kernel threads
 * (iou-sqp-*, from IORING_SETUP_SQPOLL) never run code amber injects.
 * amber cannot dump an io_uring: the dump must be refused at once, naming
 * the descriptor, and the process must run on untouched. It checks that
 * its ring still works (a NOP completes) after SIGTERM.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <linux/io_uring.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

static int threads(void)
{
	DIR *d = opendir("/proc/self/task");
	int n = 0;

	if (!d)
		fail("opendir: %s", strerror(errno));
	while (readdir(d))
		n++;
	closedir(d);
	return n - 2;
}

int main(void)
{
	struct io_uring_params p = { 0 };
	struct io_uring_sqe *sqes;
	unsigned *sq_tail, *sq_array, *cq_head, *cq_tail;
	char *sq, *cq;
	int fd;

	test_init();
	p.flags = IORING_SETUP_SQPOLL;
	p.sq_thread_idle = 100000;
	fd = syscall(SYS_io_uring_setup, 4, &p);
	if (fd < 0)
		fail("io_uring_setup: %s", strerror(errno));
	sq = mmap(NULL, p.sq_off.array + p.sq_entries * sizeof(unsigned), PROT_READ | PROT_WRITE, MAP_SHARED, fd, IORING_OFF_SQ_RING);
	cq = mmap(NULL, p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe), PROT_READ | PROT_WRITE, MAP_SHARED, fd, IORING_OFF_CQ_RING);
	sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED, fd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED)
		fail("mmap ring: %s", strerror(errno));
	if (threads() < 2)
		fail("no io_uring kernel thread in /proc/self/task");
	test_ready();
	test_wait_stop();

	sq_tail = (unsigned *)(sq + p.sq_off.tail);
	sq_array = (unsigned *)(sq + p.sq_off.array);
	cq_head = (unsigned *)(cq + p.cq_off.head);
	cq_tail = (unsigned *)(cq + p.cq_off.tail);
	memset(&sqes[0], 0, sizeof(sqes[0]));
	sqes[0].opcode = IORING_OP_NOP;
	sqes[0].user_data = 42;
	sq_array[*sq_tail & (p.sq_entries - 1)] = 0;
	__atomic_store_n(sq_tail, *sq_tail + 1, __ATOMIC_RELEASE);
	if (syscall(SYS_io_uring_enter, fd, 1, 1, IORING_ENTER_GETEVENTS | IORING_ENTER_SQ_WAKEUP, NULL, 0) < 0)
		fail("io_uring_enter: %s", strerror(errno));
	if (__atomic_load_n(cq_tail, __ATOMIC_ACQUIRE) == *cq_head)
		fail("the NOP did not complete");
	pass();
}
