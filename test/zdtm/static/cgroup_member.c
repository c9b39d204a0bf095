/*
 * cgroup_member - a process and its child in cgroup v1 cgroups of their
 * own keep them: after restore each is in the cgroups it was in, and
 * the properties set on them are back (CRIU's cgroup.img).
 *
 * It makes amber-cg-PID in the cpu, pids, freezer, memory and devices
 * hierarchies and amber-cg-PID/sub in cpu and devices, sets cpu.shares
 * 512 and pids.max 77 on them and cpu.shares 256 on sub, denies all
 * devices but a few in devices' amber-cg-PID (which the restore must
 * write before it makes sub: the kernel refuses "a" in devices.deny of
 * a cgroup with children; zdtm cgroup04), joins them, and forks a child
 * that joins cpu's sub.  The driver dumps it (freezing amber-cg-PID
 * with --freeze-cgroup), removes the cgroups, and restores it.  After
 * restore, each checks its /proc/self/cgroup and the properties, and
 * that pids' notify_on_release is still mode 0666 and owned by 1000:1000
 * (CRIU's perms of a property; zdtm cgroup03).  A
 * file "cgroot" in its directory, if present, names the root the
 * cgroups were restored under instead (--cgroup-root).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

static const char *ctls[] = { "cpu", "pids", "freezer", "memory", "devices" };

/* the devices the cgroups of devices allow, all others denied */
static const char *dev_allow[] = { "c *:* m",	"b *:* m",   "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm",  "c 1:8 rwm",
				   "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm" };
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

static void read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		fail("open %s: %s", path, strerror(errno));
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		fail("read %s: %s", path, strerror(errno));
	buf[n] = 0;
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = 0;
}

static void expect_file(const char *path, const char *want)
{
	char buf[256];

	read_file(path, buf, sizeof(buf));
	if (strcmp(buf, want))
		fail("%s is \"%s\", want \"%s\"", path, buf, want);
}

/* expect_perms checks the mode bits and owner (uid and gid) of path. */
static void expect_perms(const char *path, mode_t mode, uid_t owner)
{
	struct stat st;

	if (stat(path, &st))
		fail("stat %s: %s", path, strerror(errno));
	if ((st.st_mode & 0777) != mode || st.st_uid != owner || st.st_gid != owner)
		fail("%s: mode %o owner %d:%d, want %o %d:%d", path, st.st_mode & 0777, st.st_uid, st.st_gid,
		     mode, owner, owner);
}

/* expect_devices checks that devices.list at path allows dev_allow only. */
static void expect_devices(const char *path)
{
	char buf[1024], want[1024] = "";
	unsigned i;

	for (i = 0; i < sizeof(dev_allow) / sizeof(dev_allow[0]); i++) {
		strcat(want, dev_allow[i]);
		strcat(want, "\n");
	}
	want[strlen(want) - 1] = 0;
	read_file(path, buf, sizeof(buf));
	if (strcmp(buf, want))
		fail("%s is \"%s\", want \"%s\"", path, buf, want);
}

/* join writes the caller's pid into controller ctl's cgroup dir. */
static void join(const char *ctl, const char *dir)
{
	char path[256], pid[32];

	snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s/cgroup.procs", ctl, dir);
	snprintf(pid, sizeof(pid), "%d", getpid());
	write_file(path, pid);
}

/* cgroup_of finds the caller's path in hierarchy ctl. */
static void cgroup_of(const char *ctl, char *out, size_t size)
{
	char buf[4096], want[64], *line, *save = NULL;

	read_file("/proc/self/cgroup", buf, sizeof(buf));
	snprintf(want, sizeof(want), ":%s:", ctl);
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *p = strstr(line, want);

		if (p) {
			snprintf(out, size, "%s", p + strlen(want));
			return;
		}
	}
	fail("no %s line in /proc/self/cgroup", ctl);
}

/* root is where the cgroups are now: /NAME, or what "cgroot" says. */
static void root(char *out, size_t size)
{
	if (access("cgroot", F_OK) == 0)
		read_file("cgroot", out, size);
	else
		snprintf(out, size, "/%s", name);
}

static void check(const char *who, int in_sub)
{
	char r[128], got[256], want[256], path[256];
	unsigned i;

	root(r, sizeof(r));
	for (i = 0; i < NCTLS; i++) {
		cgroup_of(ctls[i], got, sizeof(got));
		snprintf(want, sizeof(want), "%s%s", r, in_sub && !strcmp(ctls[i], "cpu") ? "/sub" : "");
		if (strcmp(got, want))
			fail("%s: in %s cgroup %s, want %s", who, ctls[i], got, want);
	}
	snprintf(path, sizeof(path), "/sys/fs/cgroup/cpu%s/cpu.shares", r);
	expect_file(path, "512");
	snprintf(path, sizeof(path), "/sys/fs/cgroup/cpu%s/sub/cpu.shares", r);
	expect_file(path, "256");
	snprintf(path, sizeof(path), "/sys/fs/cgroup/pids%s/pids.max", r);
	expect_file(path, "77");
	snprintf(path, sizeof(path), "/sys/fs/cgroup/pids%s/notify_on_release", r);
	expect_perms(path, 0666, 1000);
	snprintf(path, sizeof(path), "/sys/fs/cgroup/devices%s/devices.list", r);
	expect_devices(path);
}

static void setup(void)
{
	char path[256];
	unsigned i;

	for (i = 0; i < NCTLS; i++) {
		snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s", ctls[i], name);
		if (mkdir(path, 0755))
			fail("mkdir %s: %s", path, strerror(errno));
	}
	snprintf(path, sizeof(path), "/sys/fs/cgroup/devices/%s/devices.deny", name);
	write_file(path, "a");
	snprintf(path, sizeof(path), "/sys/fs/cgroup/devices/%s/devices.allow", name);
	for (i = 0; i < sizeof(dev_allow) / sizeof(dev_allow[0]); i++)
		write_file(path, dev_allow[i]);
	for (i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/%s/sub", i ? "devices" : "cpu", name);
		if (mkdir(path, 0755))
			fail("mkdir %s: %s", path, strerror(errno));
	}
	snprintf(path, sizeof(path), "/sys/fs/cgroup/cpu/%s/cpu.shares", name);
	write_file(path, "512");
	snprintf(path, sizeof(path), "/sys/fs/cgroup/cpu/%s/sub/cpu.shares", name);
	write_file(path, "256");
	snprintf(path, sizeof(path), "/sys/fs/cgroup/pids/%s/pids.max", name);
	write_file(path, "77");
	snprintf(path, sizeof(path), "/sys/fs/cgroup/pids/%s/notify_on_release", name);
	if (chown(path, 1000, 1000) || chmod(path, 0666))
		fail("chown/chmod %s: %s", path, strerror(errno));
	for (i = 0; i < NCTLS; i++)
		join(ctls[i], name);
}

int main(void)
{
	int ready[2], status;
	char sub[128], c;
	pid_t child;

	test_init();
	snprintf(name, sizeof(name), "amber-cg-%d", getpid());
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
		snprintf(sub, sizeof(sub), "%s/sub", name);
		join("cpu", sub);
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		sigprocmask(SIG_BLOCK, &set, NULL);
		if (write(ready[1], "x", 1) != 1)
			_exit(2);
		sigwait(&set, &sig);
		check("child", 1);
		_exit(0);
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		fail("child did not start");
	check("parent before dump", 0);
	test_ready();
	test_wait_stop();
	check("parent", 0);
	if (kill(child, SIGUSR1) || waitpid(child, &status, 0) != child)
		fail("wake child %d: %s", child, strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("child failed its check (status %#x)", status);
	pass();
}
