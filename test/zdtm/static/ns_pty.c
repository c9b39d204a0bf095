/*
 * ns_pty - the ptys of a container: the init of its own pid and mount
 * namespaces pivots into a root of its own (./root) whose /dev is a
 * tmpfs with a devpts of its own (newinstance; /dev/ptmx a symlink to
 * pts/ptmx, as runc and zdtm's ns flavor make it), /dev/tty and
 * /dev/null, /proc, /usr bound read-only from the host and its out file
 * bound from the host, then executes itself again as /ns_pty. There it
 * makes two ptys:
 *   A: unlocked, raw termios with VMIN 3 and VTIME 7, window 33x77,
 *      packet mode on its master, "typed" written on its master;
 *   B: left locked (no unlockpt).
 * and forks L, which leads a session of its own with A's slave as its
 * controlling terminal (opened without O_NOCTTY) and forks G into a
 * process group of its own, which it puts in the foreground. The init
 * closes its copies of A: L alone holds A's master, and only the init
 * holds B's.
 *
 * After SIGTERM the init checks B (same index, still locked) and sends
 * SIGTERM to L, which checks A: its master's index is the one before,
 * /dev/pts/N is the very terminal of its slave descriptor and lies in
 * the container's devpts, termios, window size and packet mode are
 * kept, A controls L's session (TIOCGSID) with G's group in its
 * foreground, the slave reads "typed", and the master and slave still
 * talk both ways (in packet mode). L kills G and exits 0 or 1 (reasons
 * on the out file); the init reaps them and prints PASS only if L
 * passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

/* build makes ./root and its mounts, pivots into it and runs /ns_pty. */
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
	copy_self("ns_pty");
	fd = open("ns_pty.out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	must(fd >= 0, "ns_pty.out");
	close(fd);
	must(symlink("usr/lib", "lib") == 0 && symlink("usr/lib64", "lib64") == 0, "symlink lib");
	must(mkdir("proc", 0755) == 0 && mkdir("dev", 0755) == 0 && mkdir("usr", 0755) == 0, "mkdir");
	must(mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0, "mount proc");
	must(mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=1m") == 0, "mount /dev");
	must(mknod("dev/tty", S_IFCHR | 0666, makedev(5, 0)) == 0 && chmod("dev/tty", 0666) == 0, "mknod /dev/tty");
	must(mknod("dev/null", S_IFCHR | 0666, makedev(1, 3)) == 0 && chmod("dev/null", 0666) == 0, "mknod /dev/null");
	must(mkdir("dev/pts", 0755) == 0, "mkdir /dev/pts");
	must(mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") == 0,
	     "mount devpts");
	must(symlink("pts/ptmx", "dev/ptmx") == 0, "symlink /dev/ptmx");
	must(mount("/usr", "usr", NULL, MS_BIND, NULL) == 0, "bind /usr");
	must(mount(NULL, "usr", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) == 0, "remount /usr read-only");
	must(mount(out, "ns_pty.out", NULL, MS_BIND, NULL) == 0, "bind ns_pty.out");
	must(syscall(SYS_pivot_root, ".", ".") == 0, "pivot_root");
	must(umount2(".", MNT_DETACH) == 0, "umount the old root");
	must(chdir("/") == 0, "chdir /");
	execl("/ns_pty", "ns_pty", "inside", (char *)NULL);
	fail("exec /ns_pty: %s", strerror(errno));
}

/* What pty A was, as L checks it. */
static int a_master, a_slave, a_index;
static pid_t g_pid;

/* expect_read fails unless fd has exactly want to read within 5 s. */
static void expect_read(int fd, const char *want, size_t len, const char *what)
{
	char buf[64];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	if (poll(&p, 1, 5000) != 1)
		fail("%s: nothing to read", what);
	n = read(fd, buf, sizeof(buf));
	if (n != (ssize_t)len || memcmp(buf, want, len))
		fail("%s: read %zd bytes \"%.*s\", want %zu", what, n, n > 0 ? (int)n : 0, buf, len);
}

/* check_a is L's check of pty A after the restore. */
static void check_a(void)
{
	char path[64];
	struct termios t;
	struct winsize ws;
	struct stat st, fst;
	int n, pkt, tty;
	pid_t sid;

	must(ioctl(a_master, TIOCGPTN, &n) == 0, "TIOCGPTN");
	if (n != a_index)
		fail("pty A is pty %d, was pty %d", n, a_index);
	snprintf(path, sizeof(path), "/dev/pts/%d", n);
	must(stat(path, &st) == 0 && fstat(a_slave, &fst) == 0, path);
	if (st.st_rdev != fst.st_rdev || st.st_dev != fst.st_dev)
		fail("%s is %u:%u on %lx, its slave descriptor %u:%u on %lx", path, major(st.st_rdev), minor(st.st_rdev),
		     (long)st.st_dev, major(fst.st_rdev), minor(fst.st_rdev), (long)fst.st_dev);
	must(stat("/dev/pts", &st) == 0, "stat /dev/pts");
	if (fst.st_dev != st.st_dev)
		fail("pty A's slave is on %lx, the container's devpts is %lx", (long)fst.st_dev, (long)st.st_dev);
	must(tcgetattr(a_slave, &t) == 0, "tcgetattr");
	if ((t.c_lflag & ICANON) || t.c_cc[VMIN] != 3 || t.c_cc[VTIME] != 7)
		fail("termios lflag %#x VMIN %d VTIME %d, want raw, 3, 7", t.c_lflag, t.c_cc[VMIN], t.c_cc[VTIME]);
	must(ioctl(a_master, TIOCGWINSZ, &ws) == 0, "TIOCGWINSZ");
	if (ws.ws_row != 33 || ws.ws_col != 77)
		fail("window %dx%d, want 33x77", ws.ws_row, ws.ws_col);
	must(ioctl(a_master, TIOCGPKT, &pkt) == 0, "TIOCGPKT");
	if (!pkt)
		fail("packet mode is off");
	must(ioctl(a_slave, TIOCGSID, &sid) == 0, "TIOCGSID");
	if (sid != getpid())
		fail("pty A controls session %d, want L's, %d", sid, getpid());
	tty = open("/dev/tty", O_RDWR);
	must(tty >= 0, "open /dev/tty");
	close(tty);
	if (tcgetpgrp(a_slave) != g_pid)
		fail("foreground group %d, want G's, %d", tcgetpgrp(a_slave), g_pid);
	/* L reads from its terminal in the foreground again. */
	signal(SIGTTOU, SIG_IGN);
	must(tcsetpgrp(a_slave, getpgrp()) == 0, "tcsetpgrp");
	expect_read(a_slave, "typed", 5, "slave, before the dump");
	must(write(a_master, "abc", 3) == 3, "write on the master");
	expect_read(a_slave, "abc", 3, "slave, after the restore");
	must(write(a_slave, "xy", 2) == 2, "write on the slave");
	expect_read(a_master, "\0xy", 3, "master in packet mode");
}

/* run_l is L: a session of its own, controlled by pty A. */
static int run_l(int ready)
{
	char path[64];
	int status;

	must(setsid() == getpid(), "setsid");
	snprintf(path, sizeof(path), "/dev/pts/%d", a_index);
	a_slave = open(path, O_RDWR);
	must(a_slave >= 0, path);
	g_pid = fork();
	must(g_pid >= 0, "fork G");
	if (g_pid == 0) {
		setpgid(0, 0);
		for (;;)
			pause();
	}
	must(setpgid(g_pid, g_pid) == 0, "setpgid G");
	must(tcsetpgrp(a_slave, g_pid) == 0, "tcsetpgrp G");
	must(write(ready, "L", 1) == 1, "tell the init");
	test_wait_stop();
	check_a();
	kill(g_pid, SIGKILL);
	must(waitpid(g_pid, &status, 0) == g_pid, "reap G");
	return 0;
}

int main(int argc, char **argv)
{
	struct termios t;
	struct winsize ws = { .ws_row = 33, .ws_col = 77 };
	int fd, on = 1, b, b_index, lock, p[2], status;
	time_t deadline;
	pid_t l, w;
	char c;

	if (argc < 2) {
		if (getpid() != 1)
			fail("pid %d: start it with CLONE_NEWPID | CLONE_NEWNS", getpid());
		build(argv[0][0] == '.' ? argv[0] + 2 : argv[0]);
	}
	/* Its stdio from inside: no file of the host's stays open. */
	if (stdio_inside("/ns_pty.out", "/dev/null", ~0U))
		return 2;
	test_init();

	a_master = open("/dev/ptmx", O_RDWR | O_NOCTTY);
	must(a_master >= 0, "open /dev/ptmx");
	must(unlockpt(a_master) == 0 && ioctl(a_master, TIOCGPTN, &a_index) == 0, "pty A");
	fd = open(ptsname(a_master), O_RDWR | O_NOCTTY);
	must(fd >= 0, "open A's slave");
	must(tcgetattr(fd, &t) == 0, "tcgetattr");
	cfmakeraw(&t);
	t.c_cc[VMIN] = 3;
	t.c_cc[VTIME] = 7;
	must(tcsetattr(fd, TCSANOW, &t) == 0, "tcsetattr");
	close(fd);
	must(ioctl(a_master, TIOCSWINSZ, &ws) == 0, "TIOCSWINSZ");
	must(ioctl(a_master, TIOCPKT, &on) == 0, "TIOCPKT");
	must(write(a_master, "typed", 5) == 5, "write on A's master");
	b = open("/dev/ptmx", O_RDWR | O_NOCTTY);
	must(b >= 0 && ioctl(b, TIOCGPTN, &b_index) == 0, "pty B");

	must(pipe(p) == 0, "pipe");
	l = fork();
	must(l >= 0, "fork L");
	if (l == 0) {
		close(b);
		close(p[0]);
		_exit(run_l(p[1]));
	}
	close(p[1]);
	close(a_master);
	must(read(p[0], &c, 1) == 1, "wait for L");
	close(p[0]);

	test_ready();
	test_wait_stop();

	must(ioctl(b, TIOCGPTN, &fd) == 0, "TIOCGPTN of B");
	if (fd != b_index)
		fail("pty B is pty %d, was pty %d", fd, b_index);
	must(ioctl(b, TIOCGPTLCK, &lock) == 0, "TIOCGPTLCK");
	if (!lock)
		fail("pty B is unlocked, was locked");
	must(kill(l, SIGTERM) == 0, "SIGTERM to L");
	deadline = time(NULL) + 30;
	while ((w = waitpid(l, &status, WNOHANG)) == 0 && time(NULL) < deadline)
		usleep(10000);
	if (w != l)
		fail("L did not end");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("L: status %#x", status);
	pass();
}
