/*
 * tree - a tree of processes.
 *
 * Usage: tree N.  Process 0 (the one started) is the root; process i forks
 * processes 2i+1 and 2i+2 while they are below N, so N processes form a
 * binary tree.  Each records its parent's PID and fills a page with its
 * index; the root says "ready" once all N are up.  On SIGTERM the root
 * signals its children, which signal theirs, and each process checks its
 * parent and its page, waits for its children to exit with status 0, and
 * exits with status 0; the root then prints PASS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define SEED 0x7472650000000000ULL	/* + process index */

/* The state of one process of the tree. */
struct node {
	unsigned long index;
	pid_t parent;		/* 0 for the root */
	pid_t child[2];		/* 0: none */
	unsigned char page[PG] __attribute__((aligned(8)));
};

static struct node self;

static void run_child(unsigned long n, const int ready[2]) __attribute__((noreturn));

/* Fork the children of self.index that are below n. */
static void fork_children(unsigned long n, const int ready[2])
{
	int k;

	for (k = 0; k < 2; k++) {
		unsigned long c = 2 * self.index + 1 + k;
		pid_t pid;

		if (c >= n)
			return;
		pid = fork();
		if (pid < 0)
			fail("fork process %lu: %s", c, strerror(errno));
		if (pid == 0) {
			self.parent = getppid();
			self.index = c;
			self.child[0] = self.child[1] = 0;
			run_child(n, ready);
		}
		self.child[k] = pid;
	}
}

/* Stop and reap self's children, then check self. */
static void finish(void)
{
	int k, status;

	for (k = 0; k < 2; k++)
		if (self.child[k] && kill(self.child[k], SIGTERM))
			fail("process %lu: kill child %d: %s", self.index,
			     self.child[k], strerror(errno));
	for (k = 0; k < 2; k++) {
		if (!self.child[k])
			continue;
		if (waitpid(self.child[k], &status, 0) != self.child[k])
			fail("process %lu: wait child %d: %s", self.index,
			     self.child[k], strerror(errno));
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			fail("process %lu: child %d ended with status %#x",
			     self.index, self.child[k], status);
	}
	if (self.parent && getppid() != self.parent)
		fail("process %lu: parent is %d, expected %d", self.index,
		     getppid(), self.parent);
	if (self.index)
		check_page(self.page, SEED + self.index, "process page");
}

/* The life of a process other than the root. */
static void run_child(unsigned long n, const int ready[2])
{
	close(ready[0]);
	fork_children(n, ready);
	fill_page(self.page, SEED + self.index);
	/* Its own children are forked: this process is up. */
	if (write(ready[1], "", 1) != 1)
		fail("process %lu: write ready pipe: %s", self.index,
		     strerror(errno));
	close(ready[1]);
	bench_wait_stop();
	finish();
	exit(0);
}

int main(int argc, char **argv)
{
	unsigned long n, i;
	int pipefd[2];
	char c;

	bench_init();
	if (argc != 2)
		fail("usage: tree N");
	n = arg_ulong(argv[1], "number of processes");
	if (pipe(pipefd))
		fail("pipe: %s", strerror(errno));
	fork_children(n, pipefd);
	close(pipefd[1]);
	for (i = 1; i < n; i++)
		if (read(pipefd[0], &c, 1) != 1)
			fail("read ready pipe after %lu of %lu: %s", i - 1, n - 1,
			     strerror(errno));
	close(pipefd[0]);

	bench_ready();
	bench_wait_stop();
	finish();
	pass();
}
