/*
 * ns_mnt - a container's mount namespace: the init of its own pid, IPC
 * and mount namespaces pivots into a root of its own, as runc does, with
 * proc, sysfs (read-only), a /dev tmpfs holding devpts, mqueue and a
 * /dev/null bound from the host, /proc/keys masked by that /dev/null,
 * /usr bound read-only from the host, a read-only bind of a directory of
 * its root, a tmpfs on /tmp (with a file hidden under another tmpfs), a
 * read-only tmpfs and its out file bound from the host.  It
 * keeps a file of its /tmp tmpfs open and its working directory there.
 *
 * The driver starts it with CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC in
 * its scratch directory.  The first run builds ROOT (./root) and its
 * mounts, pivots there and executes itself again as /ns_mnt, which sets
 * up its state, notes its mounts and says ready.  After SIGTERM it
 * checks that its mounts are those it had (mountinfo, but for ids and
 * devices), that the tmpfs files have their contents, modes and links,
 * that a device node, a FIFO, a sparse file and a set-gid file of another
 * owner on them are as they were (kinds_setup), that its open file is
 * still that file at its offset, that the read-only
 * mounts are read-only and that /proc is its own pid namespace's.
 *
 * With NS_MNT_HOST_FD set, it keeps its out file open at fd 100 through
 * the host's mount, which a dump must refuse.
 *
 * NS_MNT_FILES names, by comma, kinds of files that amber looks up by
 * path, for it to keep in /files of its root (files_setup): "inotify"
 * watches, a write "lease" being broken, an unlinked file "mapped"
 * shared, a "symlink" to an absolute path that only its root has,
 * opened O_PATH, and a "fifo" with data in it; after SIGTERM it checks
 * each (files_check). The paths are the container's: amber must find
 * them in its root, not in the host's.
 *
 * With NS_MNT_OVER set, it stacks mounts that hide each other under
 * /over (over_setup): two tmpfs at /over/a/b, the upper one with a tmpfs
 * at /over/a/b/c, then a tmpfs at /over/a over them all and a bind of
 * its own /b over it; and an unbindable tmpfs at /over/u, with a bind of
 * its /sub made before.  After SIGTERM, it unmounts them from the top and
 * checks the files of each mount as it shows (over_check), and that
 * /over/u cannot be bound: a dump must save the hidden and unbindable
 * tmpfs files, and a restore make every mount, hidden ones and their
 * binds, in its place, unbindable again.
 *
 * With NS_MNT_SUBNS set, it also forks a child that unshares a mount
 * namespace of its own (sub_child): there it mounts a tmpfs on /sub and
 * binds /data on /ro, keeps a file of that tmpfs open, and keeps the
 * file /tmp/inherited its parent opened in its namespace and closed.
 * After SIGTERM the child checks its own mounts, its files, and that the
 * inherited file is still on its parent's mount (its mnt_id differs from
 * that of the file opened again in the child's namespace); the parent
 * checks that none of the child's mounts shows in its namespace.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define DATA_LEN (64 << 10)
#define DATA_SEED 0x6d6e74
#define DATA_OFF 1000

static void put(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	must(fd >= 0, path);
	must(write(fd, text, strlen(text)) == (ssize_t)strlen(text), path);
	close(fd);
}

static void bind(const char *src, const char *dst, unsigned long ro)
{
	must(mount(src, dst, NULL, MS_BIND, NULL) == 0, dst);
	if (ro)
		must(mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | ro, NULL) == 0, dst);
}

#define SPARSE_SIZE (8 << 20) /* twice what /tmp may hold */
#define SPARSE_DATA "in the middle"
#define KINDS_SEC 1000000000
#define KINDS_NSEC 123456789

/*
 * kinds_setup makes files of the kinds a tmpfs keeps beside plain ones:
 * a device node on /dev, a FIFO, a sparse file larger than /tmp may hold
 * (its holes must stay holes), and a set-gid file of another owner with
 * a time to the nanosecond.
 */
static void kinds_setup(void)
{
	struct timespec ts[2] = {{KINDS_SEC, KINDS_NSEC}, {KINDS_SEC, KINDS_NSEC}};
	int fd;

	must(mknod("/dev/zero2", S_IFCHR | 0620, makedev(1, 5)) == 0, "mknod /dev/zero2");
	must(chown("/dev/zero2", 0, 5) == 0 && chmod("/dev/zero2", 0620) == 0, "chown /dev/zero2");
	must(mkfifo("/tmp/fifo", 0640) == 0, "mkfifo /tmp/fifo");
	fd = open("/tmp/sparse", O_WRONLY | O_CREAT, 0644);
	must(fd >= 0 && ftruncate(fd, SPARSE_SIZE) == 0, "/tmp/sparse");
	must(pwrite(fd, SPARSE_DATA, strlen(SPARSE_DATA), SPARSE_SIZE / 2) == (ssize_t)strlen(SPARSE_DATA), "write /tmp/sparse");
	close(fd);
	put("/tmp/owned", "owned", 0644);
	must(chown("/tmp/owned", 1234, 5678) == 0 && chmod("/tmp/owned", 02755) == 0, "chown /tmp/owned");
	must(utimensat(AT_FDCWD, "/tmp/owned", ts, 0) == 0, "utimensat /tmp/owned");
}

/*
 * kinds_check checks what kinds_setup made. A time keeps its nanoseconds,
 * or none where CRIU's tar (GNU format) kept whole seconds.
 */
static void kinds_check(void)
{
	char buf[64] = {};
	struct stat st;
	int fd;

	must(stat("/dev/zero2", &st) == 0, "stat /dev/zero2");
	if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 5) || (st.st_mode & 07777) != 0620 || st.st_gid != 5)
		fail("/dev/zero2: mode %o rdev %lx gid %d, want a character device 1:5, 620, gid 5", st.st_mode,
		     (unsigned long)st.st_rdev, st.st_gid);
	fd = open("/dev/zero2", O_RDONLY);
	must(fd >= 0 && read(fd, buf, sizeof(buf)) == sizeof(buf), "read /dev/zero2");
	close(fd);
	if (buf[0] || buf[sizeof(buf) - 1])
		fail("/dev/zero2 does not read zeros");
	must(stat("/tmp/fifo", &st) == 0, "stat /tmp/fifo");
	if (!S_ISFIFO(st.st_mode) || (st.st_mode & 07777) != 0640)
		fail("/tmp/fifo: mode %o, want a FIFO, 640", st.st_mode);
	must(stat("/tmp/sparse", &st) == 0, "stat /tmp/sparse");
	if (st.st_size != SPARSE_SIZE || st.st_blocks * 512 > (1 << 20))
		fail("/tmp/sparse: size %ld with %ld blocks, want %d with its holes", (long)st.st_size,
		     (long)st.st_blocks, SPARSE_SIZE);
	fd = open("/tmp/sparse", O_RDONLY);
	must(fd >= 0 && pread(fd, buf, strlen(SPARSE_DATA), SPARSE_SIZE / 2) == (ssize_t)strlen(SPARSE_DATA),
	     "read /tmp/sparse");
	close(fd);
	if (memcmp(buf, SPARSE_DATA, strlen(SPARSE_DATA)))
		fail("/tmp/sparse holds %.13s, want %s", buf, SPARSE_DATA);
	must(stat("/tmp/owned", &st) == 0, "stat /tmp/owned");
	if (st.st_uid != 1234 || st.st_gid != 5678 || (st.st_mode & 07777) != 02755)
		fail("/tmp/owned: %d:%d mode %o, want 1234:5678 2755", st.st_uid, st.st_gid, st.st_mode & 07777);
	if (st.st_mtim.tv_sec != KINDS_SEC || (st.st_mtim.tv_nsec != KINDS_NSEC && st.st_mtim.tv_nsec))
		fail("/tmp/owned: mtime %ld.%09ld, want %d.%09d", (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, KINDS_SEC,
		     KINDS_NSEC);
}

#define MAPPED_DATA "mapped, unlinked"
#define FIFO_DATA "in the fifo"
#define LINK_TARGET "/files/only-in-the-container"

/* The files of NS_MNT_FILES: descriptors and the mapping. */
static struct {
	int inotify, wd_dir, wd_file;
	int lease, symlink, fifo;
	char *mapped;
} files;

static volatile sig_atomic_t lease_signals;

static void on_sigio(int sig)
{
	lease_signals++;
}

static void inotify_setup(void)
{
	must(mkdir("/files/watched", 0755) == 0, "mkdir /files/watched");
	put("/files/wfile", "", 0644);
	files.inotify = inotify_init1(IN_NONBLOCK);
	must(files.inotify >= 0, "inotify_init1");
	files.wd_dir = inotify_add_watch(files.inotify, "/files/watched", IN_CREATE);
	files.wd_file = inotify_add_watch(files.inotify, "/files/wfile", IN_MODIFY);
	must(files.wd_dir > 0 && files.wd_file > 0, "inotify_add_watch");
}

/* expect_event reads one inotify event, which must be for wd. */
static void expect_event(int wd, const char *what)
{
	char buf[sizeof(struct inotify_event) + NAME_MAX + 1];
	struct inotify_event *ev = (struct inotify_event *)buf;

	if (read(files.inotify, buf, sizeof(buf)) < (ssize_t)sizeof(*ev))
		fail("%s: no inotify event: %s", what, strerror(errno));
	else if (ev->wd != wd)
		fail("%s: an event of watch %d, want %d", what, ev->wd, wd);
}

static void inotify_check(void)
{
	int fd = open("/files/watched/new", O_WRONLY | O_CREAT, 0644);

	must(fd >= 0, "/files/watched/new");
	close(fd);
	expect_event(files.wd_dir, "a file made in /files/watched");
	put("/files/wfile", "changed", 0644);
	expect_event(files.wd_file, "/files/wfile written");
}

/* A write lease whose break a reader has begun, which signalled it. */
static void lease_setup(void)
{
	must(signal(SIGIO, on_sigio) != SIG_ERR, "signal SIGIO");
	files.lease = open("/files/leased", O_RDWR | O_CREAT, 0644);
	must(files.lease >= 0, "/files/leased");
	must(fcntl(files.lease, F_SETLEASE, F_WRLCK) == 0, "F_SETLEASE");
	if (open("/files/leased", O_RDONLY | O_NONBLOCK) >= 0 || errno != EWOULDBLOCK)
		fail("opening /files/leased did not start breaking its lease");
	if (lease_signals != 1)
		fail("%d signals of the lease break, want 1", lease_signals);
}

static void lease_check(void)
{
	if (fcntl(files.lease, F_GETLEASE) != F_RDLCK)
		fail("the lease of /files/leased is %d, want a break to F_RDLCK under way", fcntl(files.lease, F_GETLEASE));
	if (lease_signals != 1)
		fail("%d signals of the lease break, want the one before the dump", lease_signals);
}

static void mapped_setup(void)
{
	int fd = open("/files/mapped", O_RDWR | O_CREAT, 0600);

	must(fd >= 0 && ftruncate(fd, 4096) == 0, "/files/mapped");
	files.mapped = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	must(files.mapped != MAP_FAILED, "mmap /files/mapped");
	strcpy(files.mapped, MAPPED_DATA);
	close(fd);
	must(unlink("/files/mapped") == 0, "unlink /files/mapped");
}

static void mapped_check(void)
{
	if (strcmp(files.mapped, MAPPED_DATA))
		fail("the unlinked mapped file holds \"%.20s\"", files.mapped);
	if (access("/files/mapped", F_OK) == 0)
		fail("/files/mapped has a name again");
}

static void symlink_setup(void)
{
	put(LINK_TARGET, "target", 0644);
	must(symlink(LINK_TARGET, "/files/abslink") == 0, "symlink /files/abslink");
	files.symlink = open("/files/abslink", O_PATH | O_NOFOLLOW);
	must(files.symlink >= 0, "open /files/abslink");
}

static void symlink_check(void)
{
	char buf[64] = {};
	struct stat st;
	ssize_t n;

	must(fstatat(files.symlink, "", &st, AT_EMPTY_PATH) == 0, "fstat /files/abslink");
	n = readlinkat(files.symlink, "", buf, sizeof(buf) - 1);
	if (!S_ISLNK(st.st_mode) || n < 0 || strcmp(buf, LINK_TARGET))
		fail("the open /files/abslink is not the link to %s (mode %o, \"%s\")", LINK_TARGET, st.st_mode, buf);
}

static void fifo_setup(void)
{
	must(mkfifo("/files/fifo", 0600) == 0, "mkfifo /files/fifo");
	files.fifo = open("/files/fifo", O_RDWR | O_NONBLOCK);
	must(files.fifo >= 0 && write(files.fifo, FIFO_DATA, strlen(FIFO_DATA)) == (ssize_t)strlen(FIFO_DATA),
	     "/files/fifo");
}

static void fifo_check(void)
{
	char buf[64] = {};

	if (read(files.fifo, buf, sizeof(buf) - 1) != (ssize_t)strlen(FIFO_DATA) || strcmp(buf, FIFO_DATA))
		fail("/files/fifo holds \"%s\", want \"%s\"", buf, FIFO_DATA);
}

/* The kinds of NS_MNT_FILES, which names those to make, by comma. */
static const struct {
	const char *name;
	void (*setup)(void), (*check)(void);
} file_kinds[] = {
	{"inotify", inotify_setup, inotify_check}, {"lease", lease_setup, lease_check},
	{"mapped", mapped_setup, mapped_check},	   {"symlink", symlink_setup, symlink_check},
	{"fifo", fifo_setup, fifo_check},
};

/* wanted tells whether NS_MNT_FILES names kind. */
static int wanted(const char *kind)
{
	const char *list = getenv("NS_MNT_FILES"), *p;
	size_t n = strlen(kind);

	for (p = list; p && (p = strstr(p, kind)); p += n)
		if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
			return 1;
	return 0;
}

/* files_setup makes, under /files, the kinds NS_MNT_FILES names. */
static void files_setup(void)
{
	size_t i;

	must(mkdir("/files", 0755) == 0, "mkdir /files");
	for (i = 0; i < sizeof(file_kinds) / sizeof(file_kinds[0]); i++)
		if (wanted(file_kinds[i].name))
			file_kinds[i].setup();
}

/* files_check checks what files_setup made, after the restore. */
static void files_check(void)
{
	size_t i;

	for (i = 0; i < sizeof(file_kinds) / sizeof(file_kinds[0]); i++)
		if (wanted(file_kinds[i].name))
			file_kinds[i].check();
}

static void expect_file(const char *path, const char *want);

/* over_setup stacks the mounts of NS_MNT_OVER (see the top). */
static void over_setup(void)
{
	must(mkdir("/over", 0755) == 0 && mkdir("/over/a", 0755) == 0 && mkdir("/over/a/b", 0755) == 0, "mkdir /over");
	must(mount("tmpfs", "/over/a/b", "tmpfs", 0, "size=1m") == 0, "mount the first /over/a/b");
	put("/over/a/b/first", "the first tmpfs at /over/a/b", 0644);
	must(mount("tmpfs", "/over/a/b", "tmpfs", MS_NOSUID, "size=1m") == 0, "mount the second /over/a/b");
	put("/over/a/b/second", "the second tmpfs at /over/a/b", 0644);
	must(mkdir("/over/a/b/c", 0755) == 0, "mkdir /over/a/b/c");
	must(mount("tmpfs", "/over/a/b/c", "tmpfs", 0, "size=1m") == 0, "mount /over/a/b/c");
	put("/over/a/b/c/third", "the tmpfs at /over/a/b/c", 0644);
	must(mount("tmpfs", "/over/a", "tmpfs", MS_NODEV, "size=1m") == 0, "mount /over/a");
	must(mkdir("/over/a/b", 0755) == 0, "mkdir /over/a/b on the tmpfs at /over/a");
	put("/over/a/b/upper", "the tmpfs at /over/a", 0644);
	bind("/over/a/b", "/over/a", MS_RDONLY);
	/* An unbindable tmpfs, a directory of which was bound before. */
	must(mkdir("/over/u", 0755) == 0 && mkdir("/over/unb", 0755) == 0, "mkdir /over/u");
	must(mount("tmpfs", "/over/u", "tmpfs", 0, "size=1m") == 0, "mount /over/u");
	must(mkdir("/over/u/sub", 0755) == 0, "mkdir /over/u/sub");
	put("/over/u/sub/file", "in the unbindable tmpfs", 0644);
	bind("/over/u/sub", "/over/unb", 0);
	must(mount(NULL, "/over/u", NULL, MS_UNBINDABLE, NULL) == 0, "make /over/u unbindable");
}

/* over_check unmounts the mounts of over_setup from the top, checking each. */
static void over_check(void)
{
	expect_file("/over/a/upper", "the tmpfs at /over/a");
	if (open("/over/a/new", O_WRONLY | O_CREAT, 0644) >= 0 || errno != EROFS)
		fail("the bind at /over/a is writable");
	must(umount("/over/a") == 0, "umount the bind at /over/a");
	expect_file("/over/a/b/upper", "the tmpfs at /over/a");
	must(umount("/over/a") == 0, "umount the tmpfs at /over/a");
	expect_file("/over/a/b/second", "the second tmpfs at /over/a/b");
	expect_file("/over/a/b/c/third", "the tmpfs at /over/a/b/c");
	must(umount("/over/a/b/c") == 0, "umount /over/a/b/c");
	must(umount("/over/a/b") == 0, "umount the second /over/a/b");
	expect_file("/over/a/b/first", "the first tmpfs at /over/a/b");
	must(umount("/over/a/b") == 0, "umount the first /over/a/b");
	expect_file("/over/u/sub/file", "in the unbindable tmpfs");
	expect_file("/over/unb/file", "in the unbindable tmpfs");
	if (mount("/over/u", "/over/a", NULL, MS_BIND, NULL) == 0 || errno != EINVAL)
		fail("/over/u is bindable");
}

/* build makes ./root and its mounts, pivots into it and runs /ns_mnt. */
static void build(const char *self)
{
	char out[PATH_MAX + 64], dir[PATH_MAX - 64];

	must(getcwd(dir, sizeof(dir)) != NULL, "getcwd");
	if (snprintf(out, sizeof(out), "%s/%.32s.out", dir, self) >= (int)sizeof(out))
		fail("path too long");
	/*
	 * With NS_MNT_SLAVE (a shared mount of the host's), every mount is a
	 * slave of the host's, as a container's with rootfsPropagation
	 * rslave: the bind of it below at /slave too.
	 */
	must(mount(NULL, "/", NULL, MS_REC | (getenv("NS_MNT_SLAVE") ? MS_SLAVE : MS_PRIVATE), NULL) == 0, "make / private");
	must(mkdir("root", 0755) == 0, "mkdir root");
	bind("root", "root", 0);
	must(chdir("root") == 0, "chdir root");
	copy_self("ns_mnt");
	put("ns_mnt.out", "", 0644);
	must(symlink("usr/lib", "lib") == 0 && symlink("usr/lib64", "lib64") == 0, "symlink lib");
	must(mkdir("proc", 0755) == 0 && mkdir("sys", 0755) == 0 && mkdir("dev", 0755) == 0 &&
	     mkdir("tmp", 0755) == 0 && mkdir("usr", 0755) == 0 && mkdir("data", 0755) == 0 &&
	     mkdir("ro", 0755) == 0, "mkdir");
	put("data/file", "read only", 0644);
	must(mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0, "mount proc");
	must(mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0, "mount sysfs");
	must(mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") == 0, "mount /dev");
	put("dev/null", "", 0666);
	bind("/dev/null", "dev/null", 0);
	must(mkdir("dev/pts", 0755) == 0 && mkdir("dev/mqueue", 0755) == 0, "mkdir /dev/*");
	must(mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") == 0, "mount devpts");
	must(mount("mqueue", "dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0, "mount mqueue");
	must(mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=1777") == 0, "mount /tmp");
	/* A file hidden under a mount of the same tmpfs... */
	must(mkdir("tmp/over", 0755) == 0, "mkdir /tmp/over");
	put("tmp/over/hidden", "under the mount", 0644);
	must(mount("tmpfs", "tmp/over", "tmpfs", MS_NOSUID, "size=1m") == 0, "mount /tmp/over");
	put("tmp/over/top", "on the mount", 0644);
	/* ... and a read-only tmpfs with a file. */
	must(mkdir("rotmp", 0755) == 0, "mkdir /rotmp");
	must(mount("tmpfs", "rotmp", "tmpfs", 0, "size=1m") == 0, "mount /rotmp");
	put("rotmp/file", "in a read-only tmpfs", 0644);
	must(mount(NULL, "rotmp", NULL, MS_REMOUNT | MS_RDONLY, "size=1m") == 0, "remount /rotmp read-only");
	bind("/usr", "usr", MS_RDONLY);
	bind("data", "ro", MS_RDONLY | MS_NOSUID);
	bind("dev/null", "proc/keys", 0);
	bind(out, "ns_mnt.out", 0);
	if (getenv("NS_MNT_SLAVE")) {
		must(mkdir("slave", 0755) == 0, "mkdir /slave");
		bind(getenv("NS_MNT_SLAVE"), "slave", 0);
	}
	if (getenv("NS_MNT_HOST_FD")) {
		/* A file of the host's kept open: amber must refuse it. */
		int host = open(out, O_RDONLY);

		must(host >= 0 && dup2(host, 100) == 100, "keep a host file at fd 100");
	}
	must(syscall(SYS_pivot_root, ".", ".") == 0, "pivot_root");
	must(umount2(".", MNT_DETACH) == 0, "umount the old root");
	must(chdir("/") == 0, "chdir /");
	execl("/ns_mnt", "ns_mnt", "inside", (char *)NULL);
	fail("exec /ns_mnt: %s", strerror(errno));
}

static int by_text(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * mounts reads mountinfo without what changes across a restore: the ids
 * and devices (the first three fields), the optional fields and the
 * order of the lines (CRIU makes siblings in another order).
 */
/*
 * master_of returns the master:N field of the mount at mountpoint in
 * mountinfo (NULL: none), which mounts() leaves out.
 */
static char *master_of(const char *mountpoint)
{
	static char line[4096];
	char *found = NULL;
	FILE *f = fopen("/proc/self/mountinfo", "r");

	must(f != NULL, "mountinfo");
	while (fgets(line, sizeof(line), f)) {
		char mp[PATH_MAX], *m = strstr(line, " master:"), *dash = strstr(line, " - ");

		if (sscanf(line, "%*d %*d %*s %*s %4095s", mp) == 1 && !strcmp(mp, mountpoint) && m && m < dash) {
			found = strndup(m + 1, strcspn(m + 1, " "));
		}
	}
	fclose(f);
	return found;
}

static char *mounts(void)
{
	static char line[4096];
	char *lines[128], *all;
	size_t len = 0;
	int i, n = 0;
	FILE *f = fopen("/proc/self/mountinfo", "r");

	must(f != NULL, "mountinfo");
	while (fgets(line, sizeof(line), f)) {
		char *p = line, *q, *dash = strstr(line, " - ");

		for (i = 0; i < 3 && p; i++)
			p = strchr(p + 1, ' ');
		q = p;
		for (i = 0; i < 3 && q; i++)
			q = strchr(q + 1, ' ');
		if (!q || !dash || n == 128)
			fail("mountinfo line %s", line);
		must(asprintf(&lines[n], "%.*s%s", (int)(q - p), p, dash) > 0, "asprintf");
		len += strlen(lines[n++]);
	}
	fclose(f);
	qsort(lines, n, sizeof(lines[0]), by_text);
	all = calloc(1, len + 1);
	must(all != NULL, "calloc");
	for (i = 0; i < n; i++) {
		strcat(all, lines[i]);
		free(lines[i]);
	}
	return all;
}

/* mnt_id reads the mount of descriptor fd from its fdinfo. */
static int mnt_id(int fd)
{
	char path[64], line[256];
	int id = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	must(f != NULL, path);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "mnt_id: %d", &id) == 1)
			break;
	fclose(f);
	return id;
}

static volatile sig_atomic_t sub_stop;

static void sub_on_term(int sig)
{
	(void)sig;
	sub_stop = 1;
}

static char *mounts(void);

/*
 * sub_child runs in a mount namespace of its own (see the top); inherited
 * is /tmp/inherited, opened by its parent. It says ready on ready, then
 * waits for SIGTERM, checks and exits 0, or 1 after failing.
 */
static void sub_child(int inherited, int ready)
{
	char *before, *after, buf[64];
	struct stat st, ist;
	int fd, again;
	ssize_t n;

	signal(SIGTERM, sub_on_term);
	must(unshare(CLONE_NEWNS) == 0, "unshare CLONE_NEWNS");
	must(mkdir("/sub", 0755) == 0 || errno == EEXIST, "mkdir /sub");
	must(mount("tmpfs", "/sub", "tmpfs", MS_NOSUID, "size=1m") == 0, "mount /sub");
	put("/sub/file", "in the child's tmpfs", 0644);
	must(mount("/data", "/ro", NULL, MS_BIND, NULL) == 0, "bind /data on /ro");
	fd = open("/sub/file", O_RDONLY);
	must(fd >= 0 && lseek(fd, 3, SEEK_SET) == 3, "open /sub/file");
	before = mounts();
	must(write(ready, "R", 1) == 1, "say ready");
	close(ready);
	while (!sub_stop)
		pause();
	after = mounts();
	if (strcmp(before, after))
		fail("the child's mounts changed:\n%s\nnow:\n%s", before, after);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	must(n >= 0, "read /sub/file");
	buf[n] = 0;
	if (strcmp(buf, "in the child's tmpfs") || lseek(fd, 0, SEEK_CUR) != 3)
		fail("the child's open /sub/file holds \"%s\" at %ld", buf, (long)lseek(fd, 0, SEEK_CUR));
	expect_file("/sub/file", "in the child's tmpfs");
	expect_file("/ro/file", "read only");
	if (open("/ro/new", O_WRONLY | O_CREAT, 0644) < 0)
		fail("/ro is still the read-only bind in the child: %s", strerror(errno));
	unlink("/ro/new");
	again = open("/tmp/inherited", O_RDONLY);
	must(again >= 0, "open /tmp/inherited again");
	must(fstat(again, &st) == 0 && fstat(inherited, &ist) == 0, "fstat /tmp/inherited");
	if (st.st_ino != ist.st_ino)
		fail("the inherited /tmp/inherited is another file");
	if (mnt_id(inherited) == mnt_id(again))
		fail("the inherited /tmp/inherited is on the child's mount %d, want its parent's", mnt_id(again));
	exit(0);
}

/* sub_start forks sub_child and waits until it is ready. */
static pid_t sub_start(void)
{
	int inherited, p[2];
	char c;
	pid_t pid;

	put("/tmp/inherited", "opened by the parent", 0644);
	inherited = open("/tmp/inherited", O_RDONLY);
	must(inherited >= 0 && pipe(p) == 0, "open /tmp/inherited");
	pid = fork();
	must(pid >= 0, "fork");
	if (pid == 0) {
		close(p[0]);
		sub_child(inherited, p[1]);
	}
	close(inherited);
	close(p[1]);
	must(read(p[0], &c, 1) == 1, "wait for the child");
	close(p[0]);
	return pid;
}

/* sub_check stops the child and checks its verdict and the parent's view. */
static void sub_check(pid_t pid)
{
	int status;

	if (access("/sub/file", F_OK) == 0)
		fail("the child's /sub tmpfs shows in the parent's namespace");
	must(kill(pid, SIGTERM) == 0, "kill the child");
	must(waitpid(pid, &status, 0) == pid, "wait for the child");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("the child in its own mount namespace failed (status %#x)", status);
}

static void expect_file(const char *path, const char *want)
{
	char buf[256] = {};
	int fd = open(path, O_RDONLY);

	must(fd >= 0, path);
	must(read(fd, buf, sizeof(buf) - 1) >= 0, path);
	close(fd);
	if (strcmp(buf, want))
		fail("%s holds \"%s\", want \"%s\"", path, buf, want);
}

int main(int argc, char **argv)
{
	static char data[DATA_LEN], back[DATA_LEN];
	char lpath[PATH_MAX], cwd[PATH_MAX];
	struct stat st, fst;
	char *before, *after, *slave = NULL;
	ssize_t n;
	int fd;
	pid_t sub = 0;

	if (argc < 2) {
		if (getpid() != 1)
			fail("pid %d: start it with CLONE_NEWPID | CLONE_NEWNS", getpid());
		build(argv[0][0] == '.' ? argv[0] + 2 : argv[0]);
	}
	/* Its stdio from inside: no file of the host's stays open. */
	if (stdio_inside("/ns_mnt.out", "/dev/null", getenv("NS_MNT_HOST_FD") ? 99 : ~0U))
		return 2;
	test_init();

	fill_pattern(data, sizeof(data), DATA_SEED);
	fd = open("/tmp/data", O_RDWR | O_CREAT, 0640);
	must(fd >= 0, "/tmp/data");
	must(write(fd, data, sizeof(data)) == sizeof(data), "write /tmp/data");
	must(lseek(fd, DATA_OFF, SEEK_SET) == DATA_OFF, "lseek");
	must(mkdir("/tmp/sub", 0710) == 0, "mkdir /tmp/sub");
	must(chmod("/tmp/sub", 0710) == 0, "chmod /tmp/sub");
	put("/tmp/sub/f", "hello", 0600);
	must(symlink("sub/f", "/tmp/link") == 0, "symlink");
	must(link("/tmp/sub/f", "/tmp/hard") == 0, "link");
	put("/dev/marker", "on /dev", 0644);
	kinds_setup();
	if (getenv("NS_MNT_FILES"))
		files_setup();
	if (getenv("NS_MNT_OVER"))
		over_setup();
	if (getenv("NS_MNT_SUBNS"))
		sub = sub_start();
	must(chdir("/tmp/sub") == 0, "chdir /tmp/sub");
	before = mounts();
	if (getenv("NS_MNT_SLAVE") && !(slave = master_of("/slave")))
		fail("/slave is no slave of the host's mount before the dump");

	test_ready();
	test_wait_stop();

	after = mounts();
	if (strcmp(before, after))
		fail("mounts changed:\n%s\nnow:\n%s", before, after);
	if (sub)
		sub_check(sub);
	if (slave) {
		char *now = master_of("/slave");

		if (!now || strcmp(now, slave))
			fail("/slave: %s, want %s (a slave of the host's mount, as at the dump)", now ? now : "no master", slave);
	}
	if (getpid() != 1)
		fail("pid %d, want 1", getpid());
	expect_file("/proc/1/comm", "ns_mnt\n");
	must(getcwd(cwd, sizeof(cwd)) != NULL, "getcwd");
	if (strcmp(cwd, "/tmp/sub"))
		fail("working directory %s, want /tmp/sub", cwd);
	must(lseek(fd, 0, SEEK_CUR) == DATA_OFF, "offset of /tmp/data");
	must(fstat(fd, &fst) == 0 && stat("/tmp/data", &st) == 0, "stat /tmp/data");
	if (fst.st_ino != st.st_ino || fst.st_dev != st.st_dev)
		fail("the open /tmp/data is not the file under that name");
	snprintf(lpath, sizeof(lpath), "/proc/self/fd/%d", fd);
	n = readlink(lpath, cwd, sizeof(cwd) - 1);
	must(n > 0, "readlink");
	cwd[n] = 0;
	if (strcmp(cwd, "/tmp/data"))
		fail("the open file is %s, want /tmp/data", cwd);
	must(pread(fd, back, sizeof(back), 0) == sizeof(back), "read /tmp/data");
	expect_pattern(back, sizeof(back), DATA_SEED, "/tmp/data");
	must(stat("/tmp/sub", &st) == 0, "stat /tmp/sub");
	if ((st.st_mode & 07777) != 0710)
		fail("/tmp/sub mode %o, want 710", st.st_mode & 07777);
	expect_file("/tmp/link", "hello");
	must(stat("/tmp/hard", &st) == 0 && stat("/tmp/sub/f", &fst) == 0, "stat /tmp/hard");
	if (st.st_ino != fst.st_ino || st.st_nlink != 2)
		fail("/tmp/hard is not a hard link of /tmp/sub/f any more");
	expect_file("/dev/marker", "on /dev");
	kinds_check();
	expect_file("/rotmp/file", "in a read-only tmpfs");
	if (open("/rotmp/new", O_WRONLY | O_CREAT, 0644) >= 0 || errno != EROFS)
		fail("/rotmp is writable");
	expect_file("/tmp/over/top", "on the mount");
	must(umount("/tmp/over") == 0, "umount /tmp/over");
	expect_file("/tmp/over/hidden", "under the mount");
	expect_file("/ro/file", "read only");
	if (open("/ro/new", O_WRONLY | O_CREAT, 0644) >= 0 || errno != EROFS)
		fail("/ro is writable");
	if (open("/usr/ns_mnt_new", O_WRONLY | O_CREAT, 0644) >= 0 || errno != EROFS)
		fail("/usr is writable");
	must(stat("/proc/keys", &st) == 0 && S_ISCHR(st.st_mode), "/proc/keys is not masked by /dev/null");
	must(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode), "/dev/null is not a device");
	must(access("/dev/pts/ptmx", F_OK) == 0, "/dev/pts/ptmx");
	if (getenv("NS_MNT_FILES"))
		files_check();
	if (getenv("NS_MNT_OVER"))
		over_check();
	pass();
}
