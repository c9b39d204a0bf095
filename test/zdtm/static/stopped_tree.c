/*
 * stopped_tree - children stopped for their job control (CRIU's stopped*,
 * with threads): they must be dumped and restored stopped, never run a
 * single instruction on the way, and stop as their parent saw them.
 *
 * Child C has three threads, each counting in memory shared with the
 * parent; the parent stops it with SIGSTOP, then queues it another
 * SIGSTOP and one more to its second thread alone (pending, as a stopped
 * process leaves them). Child D, in a process group of its own (a
 * job-control stop of an orphaned group is ignored), counts too, blocks
 * SIGTTIN and is stopped by SIGTSTP, then sent SIGTTIN, which stays
 * pending. The parent notes the counts.
 *
 * After SIGTERM: the counts have not moved (neither ran); every thread of
 * C and D is in state T; waitid reports C stopped by SIGSTOP and D by
 * SIGTSTP; D's SIGTTIN is still pending. Then SIGCONT: both are reported
 * continued, every thread counts again, and both exit 0 when told.
 *
 * stopped_refused builds this with STOPPED_REFUSED: a third child E holds
 * a perf event (CRIU cannot dump one either), which amber refuses to
 * dump once it has frozen and infected C and D. After that failed dump C
 * and D must be as before.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <linux/perf_event.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define NTHREADS 3

struct shared {
	volatile uint64_t count[NTHREADS];	/* C's threads */
	volatile uint64_t dcount;		/* D */
	volatile int tids[NTHREADS];
	int started;				/* threads and processes up */
	volatile int quit;
};

static struct shared *sh;

static void count(volatile uint64_t *c)
{
	struct timespec ts = { 0, 1000000 };

	__atomic_add_fetch(&sh->started, 1, __ATOMIC_SEQ_CST);
	while (!sh->quit) {
		(*c)++;
		nanosleep(&ts, NULL);
	}
}

static void *thread(void *arg)
{
	long i = (long)arg;

	sh->tids[i] = syscall(SYS_gettid);
	count(&sh->count[i]);
	return NULL;
}

static void threaded_child(void)
{
	pthread_t t;
	long i;

	for (i = 1; i < NTHREADS; i++)
		if (pthread_create(&t, NULL, thread, (void *)i))
			_exit(2);
	thread((void *)0);
	_exit(0);
}

static void tstp_child(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTTIN);
	sigprocmask(SIG_BLOCK, &set, NULL);
	if (setpgid(0, 0))
		_exit(2);
	count(&sh->dcount);
	_exit(0);
}

#ifdef STOPPED_REFUSED
static void refused_child(void)
{
	struct timespec ts = { 0, 10000000 };
	struct perf_event_attr attr = {
		.type = PERF_TYPE_SOFTWARE,
		.size = sizeof(attr),
		.config = PERF_COUNT_SW_TASK_CLOCK,
		.disabled = 1,
	};

	if (syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC) < 0)
		_exit(2);
	__atomic_add_fetch(&sh->started, 1, __ATOMIC_SEQ_CST);
	while (!sh->quit)
		nanosleep(&ts, NULL);
	_exit(0);
}
#define NPROCS 3
#else
#define NPROCS 2
#endif

static pid_t spawn(void (*fn)(void))
{
	pid_t pid = fork();

	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (pid == 0)
		fn();
	return pid;
}

/* waitid on pid for what (WSTOPPED or WCONTINUED), leaving it waitable;
 * fails unless reported with code and status. */
static void expect_wait(pid_t pid, int what, int code, int status)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	alarm(10); /* a child that never gets there kills us: a failure */
	if (waitid(P_PID, pid, &si, what | WNOWAIT))
		fail("waitid(%d): %s", pid, strerror(errno));
	alarm(0);
	if (si.si_code != code || si.si_status != status)
		fail("pid %d reported code %d status %d, want code %d status %d",
		     pid, si.si_code, si.si_status, code, status);
}

/* The value of field (e.g. "SigPnd:") of /proc/PID/task/TID/status, in hex. */
static uint64_t status_mask(pid_t pid, pid_t tid, const char *field)
{
	char path[64], line[256];
	uint64_t v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
	f = fopen(path, "r");
	if (!f)
		fail("%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, strlen(field)))
			v = strtoull(line + strlen(field), NULL, 16);
	fclose(f);
	return v;
}

/* Fails unless every thread of pid is in state T. */
static void expect_all_stopped(pid_t pid)
{
	char path[320], buf[512], *p;
	struct dirent *e;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	d = opendir(path);
	if (!d)
		fail("%s: %s", path, strerror(errno));
	while ((e = readdir(d))) {
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", pid, e->d_name);
		f = fopen(path, "r");
		if (!f || !fgets(buf, sizeof(buf), f))
			fail("%s: %s", path, strerror(errno));
		fclose(f);
		p = strrchr(buf, ')');
		if (!p || p[2] != 'T')
			fail("thread %s of pid %d in state %c, want T", e->d_name, pid, p ? p[2] : '?');
		n++;
	}
	closedir(d);
	if (n == 0)
		fail("pid %d has no threads", pid);
}

#define SIGBIT(sig) (1ULL << ((sig) - 1))

/* Waits until every counter has moved past its snapshot. */
static void expect_counting(const uint64_t *c0, uint64_t d0)
{
	int i, tries;

	for (tries = 0; tries < 1000; tries++) {
		int moving = sh->dcount > d0;

		for (i = 0; i < NTHREADS; i++)
			moving &= sh->count[i] > c0[i];
		if (moving)
			return;
		usleep(10000);
	}
	for (i = 0; i < NTHREADS; i++)
		if (sh->count[i] == c0[i])
			fail("thread %d of the SIGSTOP'ped child does not run after SIGCONT", i);
	fail("the SIGTSTP'ped child does not run after SIGCONT");
}

static void expect_exit(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid)
		fail("waitpid(%d): %s", pid, strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("pid %d ended with status %#x, want exit 0", pid, status);
}

int main(void)
{
	uint64_t c0[NTHREADS], d0;
	pid_t c, d;
	int i;

	test_init();
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	c = spawn(threaded_child);
	d = spawn(tstp_child);
	setpgid(d, d); /* as a shell does, against the race with the child */
#ifdef STOPPED_REFUSED
	pid_t e = spawn(refused_child);
#endif
	while (__atomic_load_n(&sh->started, __ATOMIC_SEQ_CST) < NTHREADS + NPROCS - 1)
		usleep(1000);

	if (kill(c, SIGSTOP))
		fail("kill(SIGSTOP): %s", strerror(errno));
	expect_wait(c, WSTOPPED, CLD_STOPPED, SIGSTOP);
	/* Pending while it is stopped: one for the process, one for a thread. */
	if (kill(c, SIGSTOP) || syscall(SYS_tgkill, c, sh->tids[1], SIGSTOP))
		fail("queue SIGSTOP: %s", strerror(errno));
	if (!(status_mask(c, c, "ShdPnd:") & SIGBIT(SIGSTOP)) ||
	    !(status_mask(c, sh->tids[1], "SigPnd:") & SIGBIT(SIGSTOP)))
		fail("the queued SIGSTOPs are not pending");
	if (kill(d, SIGTSTP))
		fail("kill(SIGTSTP): %s", strerror(errno));
	expect_wait(d, WSTOPPED, CLD_STOPPED, SIGTSTP);
	if (kill(d, SIGTTIN))
		fail("kill(SIGTTIN): %s", strerror(errno));
	expect_all_stopped(c);
	expect_all_stopped(d);
	for (i = 0; i < NTHREADS; i++)
		c0[i] = sh->count[i];
	d0 = sh->dcount;

	test_ready();
	test_wait_stop();

	for (i = 0; i < NTHREADS; i++)
		if (sh->count[i] != c0[i])
			fail("thread %d of the SIGSTOP'ped child ran: count %llu, was %llu",
			     i, (unsigned long long)sh->count[i], (unsigned long long)c0[i]);
	if (sh->dcount != d0)
		fail("the SIGTSTP'ped child ran: count %llu, was %llu",
		     (unsigned long long)sh->dcount, (unsigned long long)d0);
	expect_wait(c, WSTOPPED, CLD_STOPPED, SIGSTOP);
	expect_wait(d, WSTOPPED, CLD_STOPPED, SIGTSTP);
	expect_all_stopped(c);
	expect_all_stopped(d);
	if (!(status_mask(d, d, "ShdPnd:") & SIGBIT(SIGTTIN)))
		fail("the SIGTSTP'ped child's blocked SIGTTIN is no longer pending");

	if (kill(c, SIGCONT) || kill(d, SIGCONT))
		fail("kill(SIGCONT): %s", strerror(errno));
	expect_wait(c, WCONTINUED, CLD_CONTINUED, SIGCONT);
	expect_wait(d, WCONTINUED, CLD_CONTINUED, SIGCONT);
	expect_counting(c0, d0);
	sh->quit = 1;
	expect_exit(c);
	expect_exit(d);
#ifdef STOPPED_REFUSED
	expect_exit(e);
#endif
	pass();
}
