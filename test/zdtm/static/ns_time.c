/*
 * ns_time - a process in a time namespace of its own keeps its clocks:
 * after restore CLOCK_MONOTONIC and CLOCK_BOOTTIME go on from where they
 * were, instead of jumping back by the namespace's offsets (as they
 * would in the restorer's namespace), and the vDSO reads the same
 * clocks as the system call (CRIU's timens.img).
 *
 * It makes the namespace itself (unshare(CLONE_NEWTIME), offsets of
 * 1000 days monotonic and 2000 days boottime, then enters it), forks a
 * child that checks the same clocks after restore, and checks them
 * itself.  Each clock, read after restore, must be at least the value
 * read before the dump and less than a day past it: a restore that lost
 * the offsets goes back by 1000 days or more, whatever the machine's
 * uptime.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

#define DAY (24LL * 3600)
#define NSEC 1000000000LL

static const struct {
	clockid_t id;
	const char *name;
	long long offset; /* seconds */
} clocks[] = {
	{ CLOCK_MONOTONIC, "monotonic", 1000 * DAY },
	{ CLOCK_BOOTTIME, "boottime", 2000 * DAY },
};
#define NCLOCKS (sizeof(clocks) / sizeof(clocks[0]))

static int64_t read_clock(clockid_t id, int vdso)
{
	struct timespec ts;
	int ret = vdso ? clock_gettime(id, &ts) : syscall(SYS_clock_gettime, id, &ts);

	if (ret)
		fail("clock_gettime(%d): %s", id, strerror(errno));
	return (int64_t)ts.tv_sec * NSEC + ts.tv_nsec;
}

/* enter_time_namespace makes a time namespace with the offsets and enters it. */
static void enter_time_namespace(void)
{
	char buf[128];
	int fd, n = 0;
	unsigned i;

	if (unshare(CLONE_NEWTIME))
		fail("unshare(CLONE_NEWTIME): %s", strerror(errno));
	for (i = 0; i < NCLOCKS; i++)
		n += snprintf(buf + n, sizeof(buf) - n, "%s %lld 0\n", clocks[i].name, clocks[i].offset);
	fd = open("/proc/self/timens_offsets", O_WRONLY);
	if (fd < 0 || write(fd, buf, n) != n)
		fail("write timens_offsets: %s", strerror(errno));
	close(fd);
	fd = open("/proc/self/ns/time_for_children", O_RDONLY);
	if (fd < 0 || setns(fd, CLONE_NEWTIME))
		fail("enter the time namespace: %s", strerror(errno));
	close(fd);
}

/* read_all reads each clock through the vDSO and the system call, which must agree. */
static void read_all(const char *who, int64_t *out)
{
	unsigned i;

	for (i = 0; i < NCLOCKS; i++) {
		int64_t v = read_clock(clocks[i].id, 1), s = read_clock(clocks[i].id, 0);

		if (s < v || s - v > 3 * NSEC)
			fail("%s: %s: vDSO %lld ns, system call %lld ns", who, clocks[i].name, (long long)v,
			     (long long)s);
		if (v < clocks[i].offset * NSEC)
			fail("%s: %s is %lld s, below the namespace's offset of %lld s", who, clocks[i].name,
			     (long long)(v / NSEC), clocks[i].offset);
		out[i] = v;
	}
}

/* check fails unless every clock went on from before, by less than a day. */
static void check(const char *who, const int64_t *before)
{
	int64_t after[NCLOCKS];
	unsigned i;

	read_all(who, after);
	for (i = 0; i < NCLOCKS; i++)
		if (after[i] < before[i] || after[i] - before[i] > DAY * NSEC)
			fail("%s: %s went from %lld s to %lld s across the restore", who, clocks[i].name,
			     (long long)(before[i] / NSEC), (long long)(after[i] / NSEC));
}

int main(void)
{
	int64_t before[NCLOCKS];
	int ready[2], status;
	pid_t child;
	char c;

	test_init();
	enter_time_namespace();
	read_all("setup", before);
	if (pipe(ready))
		fail("pipe: %s", strerror(errno));
	child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		sigset_t set;
		int sig;

		close(ready[0]);
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		sigprocmask(SIG_BLOCK, &set, NULL);
		if (write(ready[1], "x", 1) != 1)
			_exit(2);
		sigwait(&set, &sig);
		check("child", before);
		_exit(0);
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		fail("child did not start");
	test_ready();
	test_wait_stop();
	check("parent", before);
	if (kill(child, SIGUSR1) || waitpid(child, &status, 0) != child)
		fail("wake child %d: %s", child, strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("child failed its check (status %#x)", status);
	pass();
}
