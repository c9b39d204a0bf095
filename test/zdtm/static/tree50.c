/*
 * tree50 - a tree of 50 processes: the root, 7 children, 6 grandchildren
 * under each child.
 *
 * Node 0 is the root; nodes 1..7 are its children; child c forks nodes
 * 8 + 6(c - 1) .. 13 + 6(c - 1).  Every node records its PID and its
 * parent's PID, fills a page with a pattern of its own and keeps a value
 * derived from its index, then sleeps in test_wait_stop() (the SIGTERM
 * handler is inherited through fork).  Each non-root node writes one byte
 * to a pipe the root reads when it is set up; the root prints `ready` once
 * it has all 49 bytes.
 *
 * SIGTERM goes to the root only.  Each node forwards it to its children,
 * reaps them (root: 8 s, child: 6 s; stragglers are SIGKILLed and count as
 * failures) and requires exit status 0 from each, then checks that
 * getpid() and getppid() are what they were before the checkpoint, and its
 * page and value.  A node other than the root reports problems on stderr,
 * prefixed "tree50 node N (pid P)", and exits 1; the root prints PASS only
 * if all its children exited 0 and its own checks passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define NCHILD		7
#define NGRAND		6
#define NNODES		(1 + NCHILD + NCHILD * NGRAND)
#define SEED		0x7e50000000000000ULL	/* + node index */
#define PAGE		4096

/* The state of one node of the tree. */
static struct {
	int index;
	pid_t pid, ppid;
	uint64_t value;			/* zdtm_mix(SEED + index) */
	int nchild;
	int child_index[NCHILD];
	pid_t child[NCHILD];
} self;
static unsigned char page[PAGE] __attribute__((aligned(PAGE)));

static int ready_pipe[2];
static char errors[1024];	/* failures found so far, for the verdict */

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	size_t n = strlen(errors);
	va_list ap;

	if (n && n < sizeof(errors) - 2) {
		strcpy(errors + n, "; ");
		n += 2;
	}
	va_start(ap, fmt);
	vsnprintf(errors + n, sizeof(errors) - n, fmt, ap);
	va_end(ap);
}

/* Non-root node: report the errors on stderr and exit 1, or exit 0. */
static void node_exit(void) __attribute__((noreturn));
static void node_exit(void)
{
	char line[1200];
	int n;

	if (!errors[0])
		_exit(0);
	n = snprintf(line, sizeof(line), "tree50 node %d (pid %d): %s\n",
		     self.index, getpid(), errors);
	if (n > (int)sizeof(line) - 1)
		n = sizeof(line) - 1;
	if (write(2, line, n) < 0)
		_exit(1);
	_exit(1);
}

static void setup_failed(const char *what) __attribute__((noreturn));
static void setup_failed(const char *what)
{
	if (self.index == 0)
		fail("setup: %s: %s", what, test_strerror(errno));
	note("setup: %s: %s", what, test_strerror(errno));
	node_exit();
}

static void run_node(int index) __attribute__((noreturn));

static void fork_children(void)
{
	int k, first, n;

	if (self.index == 0) {
		first = 1;
		n = NCHILD;
	} else if (self.index <= NCHILD) {
		first = 1 + NCHILD + (self.index - 1) * NGRAND;
		n = NGRAND;
	} else {
		return;
	}
	for (k = 0; k < n; k++) {
		pid_t pid = fork();

		if (pid < 0)
			setup_failed("fork");
		if (pid == 0)
			run_node(first + k);
		self.child[k] = pid;
		self.child_index[k] = first + k;
		self.nchild = k + 1;
	}
}

/* Set up self as node index: the first thing a new node does. */
static void setup(int index)
{
	memset(&self, 0, sizeof(self));
	self.index = index;
	self.pid = getpid();
	self.ppid = getppid();
	self.value = zdtm_mix(SEED + index);
	fill_pattern(page, PAGE, SEED + index);
	fork_children();
}

/* Forward SIGTERM to the children and reap them within timeout seconds. */
static void stop_children(int timeout)
{
	int k, status, left = self.nchild;
	time_t deadline = time(NULL) + timeout;
	pid_t w;

	for (k = 0; k < self.nchild; k++)
		if (kill(self.child[k], SIGTERM)) {
			note("kill(child node %d, pid %d, SIGTERM): %s",
			     self.child_index[k], self.child[k],
			     test_strerror(errno));
		}
	while (left > 0) {
		w = waitpid(-1, &status, WNOHANG);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			note("waitpid with %d children left: %s", left,
			     test_strerror(errno));
			break;
		}
		if (w == 0) {
			if (time(NULL) >= deadline)
				break;
			usleep(10 * 1000);
			continue;
		}
		for (k = 0; k < self.nchild; k++)
			if (self.child[k] == w)
				break;
		if (k == self.nchild) {
			note("reaped pid %d, which is not a child of this node", w);
			continue;
		}
		self.child[k] = -w;	/* reaped */
		left--;
		if (WIFSIGNALED(status))
			note("child node %d (pid %d) killed by signal %d",
			     self.child_index[k], w, WTERMSIG(status));
		else if (WEXITSTATUS(status))
			note("child node %d (pid %d) exited with status %d",
			     self.child_index[k], w, WEXITSTATUS(status));
	}
	for (k = 0; k < self.nchild; k++) {
		if (self.child[k] <= 0)
			continue;
		note("child node %d (pid %d) did not exit within %d s of SIGTERM",
		     self.child_index[k], self.child[k], timeout);
		kill(self.child[k], SIGKILL);
		waitpid(self.child[k], &status, 0);
	}
}

/* Check the node's own state. */
static void check_self(void)
{
	long off;

	if (getpid() != self.pid)
		note("getpid() is %d, was %d", getpid(), self.pid);
	if (getppid() != self.ppid)
		note("getppid() is %d, was %d", getppid(), self.ppid);
	if (self.value != zdtm_mix(SEED + self.index))
		note("value is %#llx, expected %#llx",
		     (unsigned long long)self.value,
		     (unsigned long long)zdtm_mix(SEED + self.index));
	if ((off = pattern_mismatch(page, PAGE, SEED + self.index)) >= 0)
		note("page byte %ld is 0x%02x, expected 0x%02x", off, page[off],
		     pattern_byte(off, SEED + self.index));
}

static void run_node(int index)
{
	setup(index);
	if (write(ready_pipe[1], "r", 1) != 1)
		setup_failed("write to the ready pipe");
	close(ready_pipe[0]);
	close(ready_pipe[1]);

	test_wait_stop();
	stop_children(6);
	check_self();
	node_exit();
}

int main(void)
{
	char buf[NNODES];
	size_t got = 0;
	ssize_t n;

	test_init();
	if (pipe(ready_pipe))
		fail("pipe: %s", test_strerror(errno));
	setup(0);
	close(ready_pipe[1]);
	while (got < NNODES - 1) {
		n = read(ready_pipe[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	close(ready_pipe[0]);
	if (got != NNODES - 1) {
		stop_children(2);
		fail("only %zu of %d nodes set up", got, NNODES - 1);
	}

	test_ready();
	test_wait_stop();

	stop_children(8);
	check_self();
	if (errors[0])
		fail("root (pid %d): %s", getpid(), errors);
	pass();
}
