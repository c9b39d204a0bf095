/*
 * cgroup_threads - threads of one process in cgroups other than their
 * process's keep them (zdtm cgroup_threads).
 *
 * The process joins amber-cgt-PID in the cpu hierarchy (v1) and in the
 * unified one (v2, where it is mounted at /sys/fs/cgroup/unified). One
 * thread then moves itself to amber-cgt-PID/sub in cpu (v1 "tasks") and
 * to amber-cgt-PID/thr in the unified hierarchy, which it makes a
 * threaded cgroup (cgroup.type, cgroup.threads); the main thread stays
 * with the process. The driver dumps it, removes the cgroups and restores it.
 * After SIGTERM each thread reads /proc/thread-self/cgroup: the moved
 * one must be back in sub and thr, the others in amber-cgt-PID.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

#define CPU "/sys/fs/cgroup/cpu"
#define V2 "/sys/fs/cgroup/unified"

static char name[64];
static int has_v2;
static sem_t moved, checked, stop;
static const char *result;

static void write_file(const char *dir, const char *file, const char *value)
{
	char path[256];
	int fd;
	ssize_t n = strlen(value);

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY);
	if (fd < 0 || write(fd, value, n) != n)
		fail("write %s to %s: %s", value, path, strerror(errno));
	close(fd);
}

static void make(const char *dir)
{
	if (mkdir(dir, 0755) && errno != EEXIST)
		fail("mkdir %s: %s", dir, strerror(errno));
}

/*
 * check says what is wrong with the calling thread's cgroups, NULL if
 * they are cpu's and the unified hierarchy's sub (v1) and v2sub.
 */
static const char *check(const char *sub, const char *v2sub)
{
	static __thread char why[512];
	char want_cpu[128], want_v2[128], line[256];
	int cpu_ok = 0, v2_ok = !has_v2;
	FILE *f = fopen("/proc/thread-self/cgroup", "r");

	if (!f)
		return "no /proc/thread-self/cgroup";
	snprintf(want_cpu, sizeof(want_cpu), ":cpu:/%s%s\n", name, sub);
	snprintf(want_v2, sizeof(want_v2), "0::/%s%s\n", name, v2sub);
	snprintf(why, sizeof(why), "thread %ld: want cpu /%s%s and v2 /%s%s, have:", syscall(SYS_gettid), name, sub,
		 name, v2sub);
	while (fgets(line, sizeof(line), f)) {
		char *p = strchr(line, ':');

		if (p && !strcmp(p, want_cpu))
			cpu_ok = 1;
		if (!strcmp(line, want_v2))
			v2_ok = 1;
		strncat(why, " ", sizeof(why) - strlen(why) - 1);
		strncat(why, line, sizeof(why) - strlen(why) - 1);
	}
	fclose(f);
	return cpu_ok && v2_ok ? NULL : why;
}

static void *mover(void *arg)
{
	char dir[128], tid[32];

	(void)arg;
	snprintf(tid, sizeof(tid), "%ld", syscall(SYS_gettid));
	snprintf(dir, sizeof(dir), CPU "/%s/sub", name);
	write_file(dir, "tasks", tid);
	if (has_v2) {
		snprintf(dir, sizeof(dir), V2 "/%s/thr", name);
		write_file(dir, "cgroup.threads", tid);
	}
	result = check("/sub", "/thr");
	sem_post(&moved);
	while (sem_wait(&stop))
		;
	result = check("/sub", "/thr");
	sem_post(&checked);
	return NULL;
}

int main(void)
{
	char dir[128], pid[32];
	pthread_t th;
	const char *why;

	test_init();
	snprintf(name, sizeof(name), "amber-cgt-%d", getpid());
	snprintf(pid, sizeof(pid), "%d", getpid());
	has_v2 = access(V2 "/cgroup.procs", F_OK) == 0;
	snprintf(dir, sizeof(dir), CPU "/%s", name);
	make(dir);
	snprintf(dir, sizeof(dir), CPU "/%s/sub", name);
	make(dir);
	snprintf(dir, sizeof(dir), CPU "/%s", name);
	write_file(dir, "cgroup.procs", pid);
	if (has_v2) {
		snprintf(dir, sizeof(dir), V2 "/%s", name);
		make(dir);
		snprintf(dir, sizeof(dir), V2 "/%s/thr", name);
		make(dir);
		write_file(dir, "cgroup.type", "threaded");
		snprintf(dir, sizeof(dir), V2 "/%s", name);
		write_file(dir, "cgroup.procs", pid);
	}
	if (sem_init(&moved, 0, 0) || sem_init(&checked, 0, 0) || sem_init(&stop, 0, 0))
		fail("sem_init: %s", strerror(errno));
	if (pthread_create(&th, NULL, mover, NULL))
		fail("pthread_create");
	while (sem_wait(&moved))
		;
	if (result)
		fail("before: %s", result);
	test_ready();
	test_wait_stop();
	if ((why = check("", "")))
		fail("main %s", why);
	sem_post(&stop);
	while (sem_wait(&checked))
		;
	if (result)
		fail("mover %s", result);
	pass();
}
