/*
 * ns_userns - a rootless container's user namespace: the init of its own
 * user, pid and mount namespaces, uid and gid 0 inside mapped to 100000
 * outside (65536 ids each way, set by the driver), pivots into a root of
 * its own (./root, which the driver made for it) holding itself, its out file (bound from the host), a
 * proc of its pid namespace and a tmpfs on /tmp, then executes itself
 * again as /ns_userns. There it:
 *   - creates /tmp/owned, owned by 1000:1001 (ids of the namespace) with
 *     mode 0640, and /tmp/root0, its own (0:0);
 *   - drops CAP_NET_RAW from its effective set and CAP_SYS_BOOT from its
 *     bounding set (it keeps every other capability of the namespace);
 *   - forks a child that takes uid 1000, gid 1001 and the supplementary
 *     group 2000, losing its capabilities, and waits on a pipe;
 *   - forks a second child that unshares a mount namespace of its own (a
 *     copy of the init's, in the same user namespace) and mounts a tmpfs
 *     on /tmp/nested holding a file, and waits on the pipe too.
 *
 * After SIGTERM the init checks that its uid_map and gid_map are still
 * "0 100000 65536", /proc/self/setgroups "allow", its ids all 0, its
 * capability sets and bounding set as before, that its pid and mount
 * namespaces are owned by its user namespace (NS_GET_USERNS), and the
 * owners and modes of the two files, and that /tmp/nested is no mount
 * of its namespace; it wakes the children: the first checks its ids,
 * groups and empty capability sets, the second that its tmpfs and its
 * file are there and that its mount namespace is not the init's. It
 * exits 0 or 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <linux/capability.h>
#include <linux/nsfs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define MAP "0 100000 65536"

/* build makes ./root with its proc and tmpfs, pivots into it and runs
 * /ns_userns. */
static void build(const char *self)
{
	char out[PATH_MAX + 64], dir[PATH_MAX - 64];
	int fd;

	must(getcwd(dir, sizeof(dir)) != NULL, "getcwd");
	if (snprintf(out, sizeof(out), "%s/%.32s.out", dir, self) >= (int)sizeof(out))
		fail("path too long");
	must(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0, "make / private");
	/* The driver made it, this uid's: its own directory is root's. */
	must(mkdir("root", 0755) == 0 || errno == EEXIST, "mkdir root");
	must(mount("root", "root", NULL, MS_BIND, NULL) == 0, "bind root");
	must(chdir("root") == 0, "chdir root");
	copy_self("ns_userns");
	fd = open("ns_userns.out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	must(fd >= 0, "ns_userns.out");
	close(fd);
	must(mount(out, "ns_userns.out", NULL, MS_BIND, NULL) == 0, "bind the out file");
	must(mkdir("proc", 0755) == 0, "mkdir proc");
	must(mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0, "mount proc");
	must(mkdir("tmp", 0755) == 0, "mkdir tmp");
	must(mount("tmpfs", "tmp", "tmpfs", 0, "mode=1777") == 0, "mount tmpfs");
	must(syscall(SYS_pivot_root, ".", ".") == 0, "pivot_root");
	must(umount2(".", MNT_DETACH) == 0, "umount the old root");
	must(chdir("/") == 0, "chdir /");
	execl("/ns_userns", "ns_userns", "inside", (char *)NULL);
	fail("exec /ns_userns: %s", strerror(errno));
}

/* read_line reads the first line of path, spaces squeezed, into buf. */
static void read_line(const char *path, char *buf, size_t size)
{
	char raw[256];
	size_t j = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY), i, space = 1;

	must(fd >= 0, path);
	n = read(fd, raw, sizeof(raw) - 1);
	must(n >= 0, path);
	close(fd);
	raw[n] = 0;
	for (i = 0; raw[i] && raw[i] != '\n' && j + 1 < size; i++) {
		if (raw[i] == ' ' || raw[i] == '\t') {
			if (!space)
				buf[j++] = ' ';
			space = 1;
			continue;
		}
		buf[j++] = raw[i];
		space = 0;
	}
	if (j > 0 && buf[j - 1] == ' ')
		j--;
	buf[j] = 0;
}

/* expect_line fails unless the first line of path is want. */
static void expect_line(const char *path, const char *want)
{
	char got[256];

	read_line(path, got, sizeof(got));
	if (strcmp(got, want))
		fail("%s reads \"%s\", want \"%s\"", path, got, want);
}

struct caps {
	struct __user_cap_data_struct d[2];
};

static void get_caps(struct caps *c)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };

	must(syscall(SYS_capget, &h, c->d) == 0, "capget");
}

static unsigned long long bounding(void)
{
	unsigned long long set = 0;
	int i;

	for (i = 0; i < 64; i++) {
		int r = prctl(PR_CAPBSET_READ, i, 0, 0, 0);

		if (r < 0)
			break;
		if (r)
			set |= 1ULL << i;
	}
	return set;
}

/* ino is the inode of the file fd names. */
static unsigned long ino(int fd, const char *what)
{
	struct stat st;

	must(fstat(fd, &st) == 0, what);
	return st.st_ino;
}

/* owned_by_user fails unless the namespace /proc/self/ns/NAME is owned
 * by the task's user namespace. */
static void owned_by_user(const char *name)
{
	char path[64];
	int fd, owner, user;

	snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
	fd = open(path, O_RDONLY);
	must(fd >= 0, path);
	owner = ioctl(fd, NS_GET_USERNS);
	must(owner >= 0, "NS_GET_USERNS");
	user = open("/proc/self/ns/user", O_RDONLY);
	must(user >= 0, "/proc/self/ns/user");
	if (ino(owner, path) != ino(user, "/proc/self/ns/user"))
		fail("the %s namespace is owned by user namespace %lu, not by its own %lu", name, ino(owner, path),
		     ino(user, "user"));
	close(fd);
	close(owner);
	close(user);
}

/* expect_file fails unless path has the owner and mode given. */
static void expect_file(const char *path, uid_t uid, gid_t gid, mode_t mode)
{
	struct stat st;

	must(stat(path, &st) == 0, path);
	if (st.st_uid != uid || st.st_gid != gid || (st.st_mode & 07777) != mode)
		fail("%s is %u:%u mode %o, want %u:%u mode %o", path, st.st_uid, st.st_gid, st.st_mode & 07777, uid,
		     gid, mode);
}

/* expect_ids fails unless every uid is u and every gid g. */
static void expect_ids(uid_t u, gid_t g)
{
	uid_t r, e, s;
	gid_t rg, eg, sg;

	must(getresuid(&r, &e, &s) == 0 && getresgid(&rg, &eg, &sg) == 0, "getresuid");
	if (r != u || e != u || s != u || rg != g || eg != g || sg != g)
		fail("ids %u %u %u / %u %u %u, want %u and %u", r, e, s, rg, eg, sg, u, g);
	if ((uid_t)setfsuid(-1) != u || (gid_t)setfsgid(-1) != g)
		fail("fsuid %d fsgid %d, want %u and %u", setfsuid(-1), setfsgid(-1), u, g);
}

/* child takes uid 1000, gid 1001 and group 2000, waits for a byte on
 * fd and checks them. */
static int child(int fd)
{
	gid_t groups[1] = { 2000 }, got[4];
	struct caps c;
	char b;
	int n;

	must(setgroups(1, groups) == 0, "setgroups");
	must(setresgid(1001, 1001, 1001) == 0, "setresgid");
	must(setresuid(1000, 1000, 1000) == 0, "setresuid");
	if (read(fd, &b, 1) != 1)
		_exit(1);
	expect_ids(1000, 1001);
	n = getgroups(4, got);
	if (n != 1 || got[0] != 2000)
		fail("child: %d supplementary groups, the first %u; want 2000 alone", n, n > 0 ? got[0] : 0);
	get_caps(&c);
	if (c.d[0].effective | c.d[1].effective | c.d[0].permitted | c.d[1].permitted)
		fail("child: capabilities %08x%08x / %08x%08x, want none", c.d[1].permitted, c.d[0].permitted,
		     c.d[1].effective, c.d[0].effective);
	expect_line("/proc/self/uid_map", MAP);
	return 0;
}

/* nested unshares a mount namespace, mounts a tmpfs on /tmp/nested with
 * a file, says so on ready, waits for a byte on fd and checks them. */
static int nested(int fd, int ready)
{
	struct stat st, parent;
	int file;
	char b;

	must(unshare(CLONE_NEWNS) == 0, "unshare(CLONE_NEWNS)");
	must(mount("nested", "/tmp/nested", "tmpfs", 0, "size=64k") == 0, "mount /tmp/nested");
	file = open("/tmp/nested/file", O_WRONLY | O_CREAT | O_EXCL, 0600);
	must(file >= 0 && write(file, "nested\n", 7) == 7, "/tmp/nested/file");
	close(file);
	must(write(ready, "r", 1) == 1, "say ready");
	if (read(fd, &b, 1) != 1)
		_exit(1);
	expect_line("/tmp/nested/file", "nested");
	must(stat("/proc/self/ns/mnt", &st) == 0 && stat("/proc/1/ns/mnt", &parent) == 0, "stat the mount namespaces");
	if (st.st_ino == parent.st_ino)
		fail("nested: in the init's mount namespace");
	owned_by_user("mnt");
	return 0;
}

int main(int argc, char **argv)
{
	int p[2], q[2], wstatus, fd;
	unsigned long long bset;
	struct caps before, after;
	pid_t pid, npid;
	char b;

	if (argc < 2) {
		if (getpid() != 1 || getuid() != 0)
			fail("pid %d uid %d: start it as uid 0 of a user namespace with CLONE_NEWPID | CLONE_NEWNS",
			     getpid(), getuid());
		build(argv[0][0] == '.' ? argv[0] + 2 : argv[0]);
	}
	/* Its stdio from inside: no file of the host's stays open. */
	if (stdio_inside("/ns_userns.out", "/ns_userns", ~0U))
		return 2;
	test_init();

	expect_line("/proc/self/uid_map", MAP);
	expect_line("/proc/self/gid_map", MAP);
	fd = open("/tmp/owned", O_WRONLY | O_CREAT | O_EXCL, 0600);
	must(fd >= 0 && write(fd, "owned\n", 6) == 6, "/tmp/owned");
	must(fchown(fd, 1000, 1001) == 0 && fchmod(fd, 0640) == 0, "chown /tmp/owned");
	close(fd);
	fd = open("/tmp/root0", O_WRONLY | O_CREAT | O_EXCL, 0604);
	must(fd >= 0, "/tmp/root0");
	close(fd);

	must(prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0) == 0, "drop CAP_SYS_BOOT");
	get_caps(&before);
	before.d[0].effective &= ~(1U << CAP_NET_RAW);
	{
		struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };

		must(syscall(SYS_capset, &h, before.d) == 0, "capset");
	}
	get_caps(&before);
	bset = bounding();

	must(pipe(p) == 0, "pipe");
	pid = fork();
	must(pid >= 0, "fork");
	if (pid == 0) {
		close(p[1]);
		_exit(child(p[0]));
	}
	must(mkdir("/tmp/nested", 0755) == 0 && pipe(q) == 0, "mkdir /tmp/nested");
	npid = fork();
	must(npid >= 0, "fork");
	if (npid == 0) {
		close(p[1]);
		close(q[0]);
		_exit(nested(p[0], q[1]));
	}
	close(p[0]);
	close(q[1]);
	must(read(q[0], &b, 1) == 1, "the nested child's setup");
	close(q[0]);

	test_ready();
	test_wait_stop();

	expect_line("/proc/self/uid_map", MAP);
	expect_line("/proc/self/gid_map", MAP);
	expect_line("/proc/self/setgroups", "allow");
	if (getpid() != 1)
		fail("pid %d, want 1", getpid());
	expect_ids(0, 0);
	get_caps(&after);
	if (memcmp(&before, &after, sizeof(before)))
		fail("capabilities (permitted/effective/inheritable) %08x%08x/%08x%08x/%08x%08x, want "
		     "%08x%08x/%08x%08x/%08x%08x",
		     after.d[1].permitted, after.d[0].permitted, after.d[1].effective, after.d[0].effective,
		     after.d[1].inheritable, after.d[0].inheritable, before.d[1].permitted, before.d[0].permitted,
		     before.d[1].effective, before.d[0].effective, before.d[1].inheritable, before.d[0].inheritable);
	if (bounding() != bset)
		fail("bounding set %llx, want %llx", bounding(), bset);
	owned_by_user("pid");
	owned_by_user("mnt");
	expect_file("/tmp/owned", 1000, 1001, 0640);
	expect_file("/tmp/root0", 0, 0, 0604);
	if (access("/tmp/nested/file", F_OK) == 0)
		fail("/tmp/nested/file: the nested child's tmpfs is in the init's mount namespace");
	must(write(p[1], "xy", 2) == 2, "wake the children");
	must(waitpid(pid, &wstatus, 0) == pid, "waitpid");
	if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
		fail("the child ended with status %#x, want exit 0", wstatus);
	must(waitpid(npid, &wstatus, 0) == npid, "waitpid");
	if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
		fail("the nested child ended with status %#x, want exit 0", wstatus);
	pass();
}
