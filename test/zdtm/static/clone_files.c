/*
 * clone_files - children sharing their parent's fd table (CLONE_FILES) and
 * its fs struct: cwd, umask (CLONE_FS).
 *
 * The root R clones F with CLONE_FILES and S with CLONE_FS (each with
 * SIGCHLD, no CLONE_VM: each has its own copy of memory).  They talk over
 * pipes in fixed 128-byte messages.  Files are opened relative to a
 * directory fd, so cwd changes do not matter to them.
 *
 * Before `ready`:
 *   F opens clone_files.x and tells R the fd number; R reads the file
 *   through that fd.  R opens clone_files.w and tells F; F reads it.
 *   R chdirs into clone_files.d1 and sets umask 027; S checks that its
 *   cwd (dev/ino of ".") and umask changed with it.
 *   If kcmp() is available, R checks F shares its fd table but not its fs
 *   struct, and S the other way round.
 * F and S then sleep in read() on their pipe from R; R in test_wait_stop().
 *
 * After SIGTERM (R only):
 *   R opens clone_files.y and tells F the fd number; F checks it reads
 *   "file y", that the fds from before (x, w) still read right, opens
 *   clone_files.z and closes the "w" fd; R checks the new fd reads "file z"
 *   and the "w" fd is gone (EBADF).
 *   R chdirs into clone_files.d1/d2 and sets umask 077; S checks it sees
 *   both, then chdirs to ".." and sets umask 022; R checks it sees those.
 * F and S exit 0 when their checks pass, else reply "FAIL <reason>" and
 * exit 1; R reaps them (5 s) and prints PASS only if both exited 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define MSG		128
#define STACK_SIZE	(256 * 1024)

static int dirfd_;		/* the scratch dir, for openat() */
static int to_f[2], from_f[2], to_s[2], from_s[2];
static pid_t pid_f, pid_s;
static char stack_f[STACK_SIZE] __attribute__((aligned(16)));
static char stack_s[STACK_SIZE] __attribute__((aligned(16)));

/* --- messages --------------------------------------------------------- */

static void send_msg(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_msg(int fd, const char *fmt, ...)
{
	char msg[MSG];
	va_list ap;

	memset(msg, 0, sizeof(msg));
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (write(fd, msg, MSG) != MSG)
		_exit(3);
}

/* Read one message; returns 0, or -1 on EOF or error (msg says which). */
static int recv_msg(int fd, char *msg)
{
	size_t got = 0;
	ssize_t n;

	while (got < MSG) {
		n = read(fd, msg + got, MSG - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(msg, MSG, "%s after %zu bytes",
				 n ? test_strerror(errno) : "EOF", got);
			return -1;
		}
		got += n;
	}
	msg[MSG - 1] = '\0';
	return 0;
}

/* Child: tell R why we fail (on the reply pipe and stderr), exit 1. */
static void child_fail(const char *who, int reply, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 3, 4)));
static void child_fail(const char *who, int reply, const char *fmt, ...)
{
	char why[MSG - 8], line[MSG + 64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	n = snprintf(line, sizeof(line), "clone_files %s (pid %d): %s\n", who,
		     getpid(), why);
	if (write(2, line, n) < 0)
		_exit(1);
	send_msg(reply, "FAIL %s", why);
	_exit(1);
}

/* Does fd read exactly want (from offset 0)?  0 if so, else a reason. */
static const char *check_fd(int fd, const char *want)
{
	static char why[96];
	char buf[64];
	ssize_t n;

	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n < 0) {
		snprintf(why, sizeof(why), "pread fd %d: %s", fd,
			 test_strerror(errno));
		return why;
	}
	buf[n] = '\0';
	if (strcmp(buf, want)) {
		snprintf(why, sizeof(why), "fd %d reads \"%.40s\", expected \"%s\"",
			 fd, buf, want);
		return why;
	}
	return NULL;
}

static void make_file(const char *name, const char *content)
{
	int fd = openat(dirfd_, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, content, strlen(content)) != (ssize_t)strlen(content))
		fail("create %s: %s", name, test_strerror(errno));
	close(fd);
}

/* --- F: CLONE_FILES ------------------------------------------------------- */

static int f_main(void *arg)
{
	char msg[MSG];
	const char *why;
	int fdx, fdw, fdy, fdz;

	(void)arg;
	/* Phase 1: open x, tell R; check R's w. */
	fdx = openat(dirfd_, "clone_files.x", O_RDONLY);
	if (fdx < 0)
		child_fail("F", from_f[1], "open clone_files.x: %s",
			   test_strerror(errno));
	send_msg(from_f[1], "X %d", fdx);
	if (recv_msg(to_f[0], msg) || sscanf(msg, "W %d", &fdw) != 1)
		child_fail("F", from_f[1], "expected \"W <fd>\", got \"%s\"", msg);
	if ((why = check_fd(fdw, "file w\n")))
		child_fail("F", from_f[1], "setup: R's fd for clone_files.w: %s", why);
	send_msg(from_f[1], "ok");

	/* Phase 2, after R's SIGTERM. */
	if (recv_msg(to_f[0], msg) || sscanf(msg, "Y %d", &fdy) != 1)
		child_fail("F", from_f[1], "expected \"Y <fd>\", got \"%s\"", msg);
	if ((why = check_fd(fdy, "file y\n")))
		child_fail("F", from_f[1], "R's fd for clone_files.y, opened after "
			   "SIGTERM: %s", why);
	if ((why = check_fd(fdx, "file x\n")))
		child_fail("F", from_f[1], "own fd for clone_files.x: %s", why);
	if ((why = check_fd(fdw, "file w\n")))
		child_fail("F", from_f[1], "R's fd for clone_files.w: %s", why);
	fdz = openat(dirfd_, "clone_files.z", O_RDONLY);
	if (fdz < 0)
		child_fail("F", from_f[1], "open clone_files.z: %s",
			   test_strerror(errno));
	if (close(fdw))
		child_fail("F", from_f[1], "close fd %d: %s", fdw,
			   test_strerror(errno));
	send_msg(from_f[1], "Z %d", fdz);
	return 0;
}

/* --- S: CLONE_FS ---------------------------------------------------------- */

/* "<dev> <ino> <umask>" of the caller's cwd and umask. */
static void fs_state(char *buf, size_t len)
{
	struct stat st;
	mode_t m = umask(0);

	umask(m);
	if (stat(".", &st))
		snprintf(buf, len, "stat(.): %s", test_strerror(errno));
	else
		snprintf(buf, len, "%llu %llu %04o", (unsigned long long)st.st_dev,
			 (unsigned long long)st.st_ino, (unsigned)m);
}

static int s_main(void *arg)
{
	char msg[MSG], mine[MSG];

	(void)arg;
	close(to_s[1]);
	close(from_s[0]);
	close(to_f[0]);
	close(to_f[1]);
	close(from_f[0]);
	close(from_f[1]);

	/* Phase 1: R's chdir and umask before ready. */
	if (recv_msg(to_s[0], msg) || strncmp(msg, "C ", 2))
		child_fail("S", from_s[1], "expected \"C <state>\", got \"%s\"", msg);
	fs_state(mine, sizeof(mine));
	if (strcmp(mine, msg + 2))
		child_fail("S", from_s[1], "setup: cwd/umask \"%s\", R has \"%s\"",
			   mine, msg + 2);
	send_msg(from_s[1], "ok");

	/* Phase 2, after R's SIGTERM. */
	if (recv_msg(to_s[0], msg) || strncmp(msg, "C ", 2))
		child_fail("S", from_s[1], "expected \"C <state>\", got \"%s\"", msg);
	fs_state(mine, sizeof(mine));
	if (strcmp(mine, msg + 2))
		child_fail("S", from_s[1], "cwd/umask (dev ino umask) \"%s\" after "
			   "R's chdir and umask, R has \"%s\"", mine, msg + 2);
	if (chdir(".."))
		child_fail("S", from_s[1], "chdir(..): %s", test_strerror(errno));
	umask(022);
	fs_state(mine, sizeof(mine));
	send_msg(from_s[1], "C %s", mine);
	return 0;
}

/* --- R ----------------------------------------------------------------- */

static void expect_reply(int fd, const char *who, const char *when, char *msg)
{
	if (recv_msg(fd, msg))
		fail("%s: no reply from %s: %s", when, who, msg);
	if (!strncmp(msg, "FAIL ", 5))
		fail("%s: %s reports: %s", when, who, msg + 5);
}

/* kcmp(R, pid, type): 0 same, 1 different, -1 unavailable. */
static int kcmp_differs(pid_t pid, int type)
{
	long r = syscall(SYS_kcmp, getpid(), pid, type, 0, 0);

	if (r < 0)
		return -1;
	return r != 0;
}

static void check_kcmp(const char *when)
{
	int ff = kcmp_differs(pid_f, KCMP_FILES), fs = kcmp_differs(pid_f, KCMP_FS);
	int sf = kcmp_differs(pid_s, KCMP_FILES), ss = kcmp_differs(pid_s, KCMP_FS);

	if (ff < 0 || fs < 0 || sf < 0 || ss < 0)
		return;		/* no kcmp (CONFIG_KCMP off) */
	if (ff)
		fail("%s: kcmp: F (pid %d) does not share R's fd table", when, pid_f);
	if (!fs)
		fail("%s: kcmp: F (pid %d) shares R's fs struct", when, pid_f);
	if (ss)
		fail("%s: kcmp: S (pid %d) does not share R's fs struct", when, pid_s);
	if (!sf)
		fail("%s: kcmp: S (pid %d) shares R's fd table", when, pid_s);
}

/*
 * At exit (a fail() included): do not leave F behind -- it holds the write
 * end of its own pipe in the shared table, so it would never see EOF.
 */
static void kill_children(void)
{
	if (pid_f > 0 && kill(pid_f, SIGKILL) == 0)
		waitpid(pid_f, NULL, __WALL);
	if (pid_s > 0 && kill(pid_s, SIGKILL) == 0)
		waitpid(pid_s, NULL, __WALL);
}

static void reap(pid_t *pidp, const char *who, time_t deadline)
{
	pid_t pid = *pidp;
	int status;
	pid_t w;

	for (;;) {
		w = waitpid(pid, &status, WNOHANG | __WALL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			fail("waitpid %s (pid %d): %s", who, pid, test_strerror(errno));
		if (w == pid)
			break;
		if (time(NULL) >= deadline)
			fail("%s (pid %d) did not exit within 5 s", who, pid);
		usleep(10 * 1000);
	}
	*pidp = 0;	/* reaped: kill_children() must leave it alone */
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("%s (pid %d) ended with status %#x", who, pid, status);
}

int main(void)
{
	char msg[MSG], mine[MSG];
	const char *why;
	int fdx, fdw, fdy, fdz;
	time_t deadline;
	mode_t m;

	test_init();
	dirfd_ = open(".", O_PATH | O_DIRECTORY);
	if (dirfd_ < 0)
		fail("open .: %s", test_strerror(errno));
	make_file("clone_files.w", "file w\n");
	make_file("clone_files.x", "file x\n");
	make_file("clone_files.y", "file y\n");
	make_file("clone_files.z", "file z\n");
	if ((mkdir("clone_files.d1", 0755) && errno != EEXIST) ||
	    (mkdir("clone_files.d1/d2", 0755) && errno != EEXIST))
		fail("mkdir: %s", test_strerror(errno));
	if (pipe(to_f) || pipe(from_f) || pipe(to_s) || pipe(from_s))
		fail("pipe: %s", test_strerror(errno));

	pid_f = clone(f_main, stack_f + STACK_SIZE, CLONE_FILES | SIGCHLD, NULL);
	if (pid_f < 0)
		fail("clone(CLONE_FILES): %s", test_strerror(errno));
	pid_s = clone(s_main, stack_s + STACK_SIZE, CLONE_FS | SIGCHLD, NULL);
	if (pid_s < 0)
		fail("clone(CLONE_FS): %s", test_strerror(errno));
	atexit(kill_children);
	/* Our table is F's too: F never uses S's ends, so closing is fine. */
	close(to_s[0]);
	close(from_s[1]);

	/* Phase 1. */
	expect_reply(from_f[0], "F", "setup", msg);
	if (sscanf(msg, "X %d", &fdx) != 1)
		fail("setup: F sent \"%s\", expected \"X <fd>\"", msg);
	if ((why = check_fd(fdx, "file x\n")))
		fail("setup: F's fd for clone_files.x: %s", why);
	fdw = openat(dirfd_, "clone_files.w", O_RDONLY);
	if (fdw < 0)
		fail("open clone_files.w: %s", test_strerror(errno));
	send_msg(to_f[1], "W %d", fdw);
	expect_reply(from_f[0], "F", "setup", msg);

	if (chdir("clone_files.d1"))
		fail("chdir clone_files.d1: %s", test_strerror(errno));
	umask(027);
	fs_state(mine, sizeof(mine));
	send_msg(to_s[1], "C %s", mine);
	expect_reply(from_s[0], "S", "setup", msg);
	check_kcmp("setup");

	test_ready();
	test_wait_stop();

	check_kcmp("after SIGTERM");

	/* Phase 2: fd table. */
	fdy = openat(dirfd_, "clone_files.y", O_RDONLY);
	if (fdy < 0)
		fail("open clone_files.y: %s", test_strerror(errno));
	send_msg(to_f[1], "Y %d", fdy);
	expect_reply(from_f[0], "F", "after SIGTERM", msg);
	if (sscanf(msg, "Z %d", &fdz) != 1)
		fail("F sent \"%s\", expected \"Z <fd>\"", msg);
	if ((why = check_fd(fdz, "file z\n")))
		fail("F's fd for clone_files.z, opened after SIGTERM: %s", why);
	if (fcntl(fdw, F_GETFD) != -1 || errno != EBADF)
		fail("fd %d (clone_files.w) still open in R after F closed it", fdw);

	/* Phase 2: fs struct. */
	if (chdir("d2"))
		fail("chdir d2: %s", test_strerror(errno));
	umask(077);
	fs_state(mine, sizeof(mine));
	send_msg(to_s[1], "C %s", mine);
	expect_reply(from_s[0], "S", "after SIGTERM", msg);
	fs_state(mine, sizeof(mine));
	if (strncmp(msg, "C ", 2) || strcmp(msg + 2, mine))
		fail("after S's chdir(..) and umask(022), R has cwd/umask \"%s\", "
		     "S has \"%s\"", mine, msg);
	m = umask(0);
	if (m != 022)
		fail("umask is %04o, S set 0022", (unsigned)m);

	deadline = time(NULL) + 5;
	reap(&pid_f, "F", deadline);
	reap(&pid_s, "S", deadline);
	pass();
}
