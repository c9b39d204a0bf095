/*
 * cgroup_ns - a process in a cgroup namespace of its own keeps it: the
 * namespace's root stays where it was in each hierarchy, and each task
 * sees its cgroup relative to that root (CRIU's cgns_prefix, zdtm
 * cgroupns).
 *
 * It makes amber-cgns-PID and amber-cgns-PID/inner in the cpu and pids
 * v1 hierarchies, joins amber-cgns-PID, unshares its cgroup namespace
 * there, then joins inner, where it sees itself as "/inner". Its child
 * goes back to the namespace's root, "/". The driver dumps it, removes
 * the cgroups, and restores it. After restore each checks
 * /proc/self/cgroup.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

static const char *ctls[] = { "cpu", "pids" };
#define NCTLS (sizeof(ctls) / sizeof(ctls[0]))

static char name[64];

static void write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY);
	ssize_t n = strlen(value);

	if (fd < 0 || write(fd, value, n) != n)
		fail("write %s to %s: %s", value, path, strerror(errno));
	close(fd);
}

/* join moves the caller into dir of every hierarchy, by the host's path. */
static void join(const char *dir)
{
	char path[256], pid[32];
	unsigned i;

	snprintf(pid, sizeof(pid), "%d", getpid());
	for (i = 0; i < NCTLS; i++) {
		snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s/cgroup.procs", ctls[i], dir);
		write_file(path, pid);
	}
}

/* check requires the caller to see itself in want in every hierarchy. */
static void check(const char *who, const char *want)
{
	char buf[4096], key[64], *line, *save = NULL;
	unsigned i, found = 0;
	int fd = open("/proc/self/cgroup", O_RDONLY);
	ssize_t n;

	if (fd < 0 || (n = read(fd, buf, sizeof(buf) - 1)) < 0)
		fail("%s: read /proc/self/cgroup: %s", who, strerror(errno));
	close(fd);
	buf[n] = 0;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		for (i = 0; i < NCTLS; i++) {
			char *p;

			snprintf(key, sizeof(key), ":%s:", ctls[i]);
			p = strstr(line, key);
			if (!p)
				continue;
			found++;
			if (strcmp(p + strlen(key), want))
				fail("%s: in %s cgroup %s, want %s", who, ctls[i], p + strlen(key), want);
		}
	}
	if (found != NCTLS)
		fail("%s: %u of %zu hierarchies in /proc/self/cgroup", who, found, NCTLS);
}

static void setup(void)
{
	char path[256];
	unsigned i;

	for (i = 0; i < NCTLS; i++) {
		snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s", ctls[i], name);
		if (mkdir(path, 0755))
			fail("mkdir %s: %s", path, strerror(errno));
		snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s/inner", ctls[i], name);
		if (mkdir(path, 0755))
			fail("mkdir %s: %s", path, strerror(errno));
	}
	join(name);
	if (unshare(CLONE_NEWCGROUP))
		fail("unshare(CLONE_NEWCGROUP): %s", strerror(errno));
	snprintf(path, sizeof(path), "%s/inner", name);
	join(path);
}

int main(void)
{
	int ready[2], status;
	char c;
	pid_t child;

	test_init();
	snprintf(name, sizeof(name), "amber-cgns-%d", getpid());
	setup();
	if (pipe(ready))
		fail("pipe: %s", strerror(errno));
	child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		sigset_t set;
		int sig;

		close(ready[0]);
		join(name);
		check("child before dump", "/");
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		sigprocmask(SIG_BLOCK, &set, NULL);
		if (write(ready[1], "x", 1) != 1)
			_exit(2);
		sigwait(&set, &sig);
		check("child", "/");
		_exit(0);
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		fail("child did not start");
	check("parent before dump", "/inner");
	test_ready();
	test_wait_stop();
	check("parent", "/inner");
	if (kill(child, SIGUSR1) || waitpid(child, &status, 0) != child)
		fail("wake child %d: %s", child, strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("child failed its check (status %#x)", status);
	pass();
}
