/*
 * ns_proc - files of /proc and pidfds in a container's pid and mount
 * namespaces: the init of its own pid and mount namespaces pivots into a
 * root of its own holding only itself, its out file (bound from the
 * host) and a proc of its pid namespace on /proc.  There it keeps open
 * /proc/self/maps (its own, /proc/1/maps, read 10 bytes into),
 * /proc/CHILD/stat of a child that waits on a pipe, /proc/1/status, a
 * pidfd of a child it killed and reaped, shared anonymous memory
 * through /proc/self/map_files, unmapped since, and /proc/DEAD,
 * /proc/DEAD/status and its working directory in /proc/DEAD of another
 * child killed and reaped since (proc_dead_open).
 *
 * The driver starts it with CLONE_NEWPID | CLONE_NEWNS in its scratch
 * directory.  The first run builds ROOT (./root), pivots there and
 * executes itself again as /ns_proc (a static program), which sets up
 * its state and says ready.
 *
 * After SIGTERM: the maps file is at offset 10 and shows /ns_proc
 * mapped; the stat file starts with "CHILD (ns_proc)"; the stat and
 * status files are the very files of those names under its /proc (same
 * device and inode: the procfs of its pid namespace, not another); the
 * pidfd's fdinfo says Pid -1 and signalling through it fails with ESRCH;
 * the shared memory holds what was written; the files of /proc/DEAD are
 * those of a dead process of its pid namespace (proc_dead_check); the
 * child, woken, exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define SHM_TEXT "shared anonymous memory"
#define MAPS_OFF 10

/* build makes ./root with its proc, pivots into it and runs /ns_proc. */
static void build(const char *self)
{
	char out[PATH_MAX + 64], dir[PATH_MAX - 64];
	int fd;

	must(getcwd(dir, sizeof(dir)) != NULL, "getcwd");
	if (snprintf(out, sizeof(out), "%s/%.32s.out", dir, self) >= (int)sizeof(out))
		fail("path too long");
	must(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0, "make / private");
	must(mkdir("root", 0755) == 0, "mkdir root");
	must(mount("root", "root", NULL, MS_BIND, NULL) == 0, "bind root");
	must(chdir("root") == 0, "chdir root");
	copy_self("ns_proc");
	fd = open("ns_proc.out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	must(fd >= 0, "ns_proc.out");
	close(fd);
	must(mount(out, "ns_proc.out", NULL, MS_BIND, NULL) == 0, "bind the out file");
	must(mkdir("proc", 0755) == 0, "mkdir proc");
	must(mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0, "mount proc");
	must(syscall(SYS_pivot_root, ".", ".") == 0, "pivot_root");
	must(umount2(".", MNT_DETACH) == 0, "umount the old root");
	must(chdir("/") == 0, "chdir /");
	execl("/ns_proc", "ns_proc", "inside", (char *)NULL);
	fail("exec /ns_proc: %s", strerror(errno));
}

/* same_file fails unless fd is the file path names now. */
static void same_file(int fd, const char *path)
{
	struct stat a, b;

	must(fstat(fd, &a) == 0 && stat(path, &b) == 0, path);
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		fail("the open %s is %lx:%lu, the file of that name %lx:%lu", path, (unsigned long)a.st_dev,
		     (unsigned long)a.st_ino, (unsigned long)b.st_dev, (unsigned long)b.st_ino);
}

/* fdinfo_pid reads the Pid line of pidfd fd's fdinfo. */
static int fdinfo_pid(int fd)
{
	char path[64], line[256];
	int pid = 0, found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	must(f != NULL, path);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Pid: %d", &pid) == 1)
			found = 1;
	fclose(f);
	if (!found)
		fail("%s has no Pid line", path);
	return pid;
}

/* read_all reads fd from offset 0 into a new buffer. */
static char *read_all(int fd, const char *what)
{
	size_t len = 0, cap = 1 << 16;
	char *buf = malloc(cap);
	ssize_t n;

	must(buf != NULL, "malloc");
	while ((n = pread(fd, buf + len, cap - len - 1, len)) > 0) {
		len += n;
		if (cap - len < 4096) {
			cap *= 2;
			buf = realloc(buf, cap);
			must(buf != NULL, "realloc");
		}
	}
	must(n == 0, what);
	buf[len] = 0;
	return buf;
}

int main(int argc, char **argv)
{
	char path[128], want[64], buf[256];
	int p[2], maps, stat_fd, status, pidfd, shm, wstatus;
	pid_t child, dead;
	struct proc_dead gone;
	char *shared, *text;
	ssize_t n;

	if (argc < 2) {
		if (getpid() != 1)
			fail("pid %d: start it with CLONE_NEWPID | CLONE_NEWNS", getpid());
		build(argv[0][0] == '.' ? argv[0] + 2 : argv[0]);
	}
	/* Its stdio from inside: no file of the host's stays open. */
	if (stdio_inside("/ns_proc.out", "/ns_proc", ~0U))
		return 2;
	test_init();

	must(pipe(p) == 0, "pipe");
	child = fork();
	must(child >= 0, "fork");
	if (child == 0) {
		char c;

		close(p[1]);
		_exit(read(p[0], &c, 1) == 1 ? 0 : 1);
	}
	close(p[0]);
	dead = fork();
	must(dead >= 0, "fork");
	if (dead == 0) {
		pause();
		_exit(0);
	}
	pidfd = syscall(SYS_pidfd_open, dead, 0);
	must(pidfd >= 0, "pidfd_open");
	must(kill(dead, SIGKILL) == 0 && waitpid(dead, NULL, 0) == dead, "kill and reap");

	maps = open("/proc/self/maps", O_RDONLY);
	must(maps >= 0 && read(maps, buf, MAPS_OFF) == MAPS_OFF, "/proc/self/maps");
	snprintf(path, sizeof(path), "/proc/%d/stat", child);
	stat_fd = open(path, O_RDONLY);
	must(stat_fd >= 0, path);
	status = open("/proc/1/status", O_RDONLY);
	must(status >= 0, "/proc/1/status");

	shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	must(shared != MAP_FAILED, "mmap");
	strcpy(shared, SHM_TEXT);
	snprintf(buf, sizeof(buf), "/proc/self/map_files/%lx-%lx", (unsigned long)shared, (unsigned long)shared + 4096);
	shm = open(buf, O_RDWR);
	must(shm >= 0, buf);
	must(munmap(shared, 4096) == 0, "munmap");
	proc_dead_open(&gone, 1);

	test_ready();
	test_wait_stop();

	if (getpid() != 1)
		fail("pid %d, want 1", getpid());
	if (lseek(maps, 0, SEEK_CUR) != MAPS_OFF)
		fail("/proc/self/maps is not at offset %d", MAPS_OFF);
	text = read_all(maps, "read /proc/self/maps");
	if (!strstr(text, " /ns_proc\n"))
		fail("the open /proc/self/maps does not show /ns_proc mapped:\n%s", text);
	free(text);
	same_file(maps, "/proc/1/maps");
	snprintf(want, sizeof(want), "%d (ns_proc)", child);
	n = pread(stat_fd, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	if (strncmp(buf, want, strlen(want)))
		fail("%s reads \"%s\", want it to start with \"%s\"", path, buf, want);
	same_file(stat_fd, path);
	same_file(status, "/proc/1/status");
	if (fdinfo_pid(pidfd) != -1)
		fail("the pidfd of the dead child says Pid %d, want -1", fdinfo_pid(pidfd));
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) != -1 || errno != ESRCH)
		fail("signal 0 through the dead child's pidfd: %s, want ESRCH", test_strerror(errno));
	n = pread(shm, buf, sizeof(SHM_TEXT), 0);
	if (n != sizeof(SHM_TEXT) || memcmp(buf, SHM_TEXT, sizeof(SHM_TEXT)))
		fail("the shared memory's descriptor reads \"%.*s\", want \"%s\"", (int)(n > 0 ? n : 0), buf, SHM_TEXT);
	proc_dead_check(&gone);
	must(write(p[1], "x", 1) == 1, "wake the child");
	must(waitpid(child, &wstatus, 0) == child, "waitpid");
	if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
		fail("the child ended with status %#x, want exit 0", wstatus);
	pass();
}
