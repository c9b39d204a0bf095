/*
 * session_leaders - sessions and process groups whose leaders are gone,
 * are zombies, or come later in the tree.
 *
 * The root R makes itself a child subreaper (the init of a pid namespace
 * is one anyway), so that orphans come back to it, and sets up:
 *   A  M1 in the session and group of S1, which exited: M1 is R's now;
 *   B  O in the session of X, a living session leader (L's child),
 *      whose child Y (O's parent) exited: O is R's now; X becomes a child
 *      subreaper only after Y is gone, and O must not become its child
 *      on restore;
 *   C  Q in the group of G, which exited: Q is R's now, in R's session;
 *   D  W in the session of its sibling Z, which exited and stays an
 *      unreaped zombie;
 *   E  K, forked by P before P called setsid: K keeps R's session;
 *   F  A1 in the group of its younger sibling B1;
 *   G  P2 in the group of its own child C2.
 * Every checked process makes sure of its IDs, parent included, before it
 * writes a byte to a pipe; R prints `ready` once it has all twelve.
 *
 * After SIGTERM R checks its own IDs and that Z is still a zombie in its
 * session and group, and sends SIGTERM to every checked process, which
 * checks getpid(), getppid(), getpgid(0) and getsid(0) and exits 0 or 1
 * (reasons on stderr, prefixed "session_leaders X (pid N)").  L, P and P2 add
 * their child's verdict to their own; R reaps all (6 s) and prints PASS
 * only if all exited 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

/* What one process should have. */
struct ids {
	const char *name;
	pid_t pid, ppid, pgid, sid;
};

static struct ids me;
static int ready_pipe[2], pid_pipe[2];
static char errors[1024];

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	size_t n = strlen(errors);
	va_list ap;

	if (n && n < sizeof(errors) - 2) {
		strcpy(errors + n, "; ");
		n += 2;
	}
	va_start(ap, fmt);
	vsnprintf(errors + n, sizeof(errors) - n, fmt, ap);
	va_end(ap);
}

/* A checked process ends: reasons on stderr and 1, or 0. */
static void child_exit(void) __attribute__((noreturn));
static void child_exit(void)
{
	char line[1200];
	int n;

	if (!errors[0])
		_exit(0);
	n = snprintf(line, sizeof(line), "session_leaders %s (pid %d): %s\n", me.name, getpid(), errors);
	if (n > (int)sizeof(line) - 1)
		n = sizeof(line) - 1;
	if (write(2, line, n) < 0)
		_exit(1);
	_exit(1);
}

static void check_own(const char *when)
{
	if (getpid() != me.pid)
		note("%s: getpid() is %d, expected %d", when, getpid(), me.pid);
	if (getppid() != me.ppid)
		note("%s: getppid() is %d, expected %d", when, getppid(), me.ppid);
	if (getpgid(0) != me.pgid)
		note("%s: getpgid(0) is %d, expected %d", when, getpgid(0), me.pgid);
	if (getsid(0) != me.sid)
		note("%s: getsid(0) is %d, expected %d", when, getsid(0), me.sid);
}

/* wait_parent waits (5 s at most) until the caller's parent is ppid: an
 * orphan is reparented once its parent is dead. */
static void wait_parent(pid_t ppid)
{
	time_t deadline = time(NULL) + 5;

	while (getppid() != ppid && time(NULL) < deadline)
		usleep(1000);
}

/* checked becomes the checked process name with ids (its own pid filled
 * in), reports itself ready with its pid, waits for SIGTERM, then checks
 * again; child, if not 0, is its own child whose verdict it adds. */
static void checked(const char *name, pid_t ppid, pid_t pgid, pid_t sid, pid_t child) __attribute__((noreturn));
static void checked(const char *name, pid_t ppid, pid_t pgid, pid_t sid, pid_t child)
{
	int status;

	me.name = name;
	me.pid = getpid();
	me.ppid = ppid;
	me.pgid = pgid;
	me.sid = sid;
	wait_parent(ppid);
	check_own("setup");
	if (write(pid_pipe[1], &me.pid, sizeof(me.pid)) != sizeof(me.pid) || write(ready_pipe[1], "r", 1) != 1)
		_exit(1);
	close(ready_pipe[0]);
	close(ready_pipe[1]);
	close(pid_pipe[0]);
	close(pid_pipe[1]);
	test_wait_stop();
	check_own("after SIGTERM");
	if (child) {
		pid_t w;

		/* R may send SIGTERM more than once. */
		while ((w = waitpid(child, &status, 0)) < 0 && errno == EINTR)
			;
		if (w != child)
			note("wait for child %d: %s", child, test_strerror(errno));
		else if (!WIFEXITED(status) || WEXITSTATUS(status))
			note("child %d ended with status %#x", child, status);
	}
	child_exit();
}

static pid_t must_fork(const char *what)
{
	pid_t pid = fork();

	if (pid < 0) {
		note("fork %s: %s", what, test_strerror(errno));
		child_exit();
	}
	return pid;
}

int main(void)
{
	pid_t r, rpgid, rsid, z, pid, s1, l, g, b1, p2, c2;
	pid_t kids[16];
	int n = 0, k, got = 0, status, left;
	siginfo_t si;
	time_t deadline;
	char c;

	test_init();
	me.name = "R";
	r = me.pid = getpid();
	me.ppid = getppid();
	rpgid = me.pgid = getpgid(0);
	rsid = me.sid = getsid(0);
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
		fail("PR_SET_CHILD_SUBREAPER: %s", test_strerror(errno));
	if (pipe(ready_pipe) || pipe(pid_pipe))
		fail("pipe: %s", test_strerror(errno));

	/* A: M1 in the session of S1, which exits. */
	s1 = fork();
	if (s1 < 0)
		fail("fork S1: %s", test_strerror(errno));
	if (s1 == 0) {
		me.name = "S1";
		if (setsid() < 0)
			note("setsid: %s", test_strerror(errno));
		if (must_fork("M1") == 0)
			checked("M1", r, getpgid(0), getsid(0), 0);
		child_exit();
	}
	if (waitpid(s1, &status, 0) != s1 || status)
		fail("S1 ended with %#x", status);

	/* B: O in the session of X, orphaned by Y. */
	l = fork();
	if (l < 0)
		fail("fork L: %s", test_strerror(errno));
	if (l == 0) {
		pid_t self = getpid(), x = must_fork("X");

		if (x == 0) {
			me.name = "X";
			if (setsid() < 0)
				note("setsid: %s", test_strerror(errno));
			pid = must_fork("Y");
			if (pid == 0) {
				me.name = "Y";
				if (must_fork("O") == 0)
					checked("O", r, getpgid(0), getsid(0), 0);
				child_exit();
			}
			if (waitpid(pid, &status, 0) != pid || status)
				note("Y ended with %#x", status);
			if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
				note("PR_SET_CHILD_SUBREAPER: %s", test_strerror(errno));
			checked("X", self, getpid(), getpid(), 0);
		}
		checked("L", r, rpgid, rsid, x);
	}

	/* C: Q in the group of G, which exits. */
	g = fork();
	if (g < 0)
		fail("fork G: %s", test_strerror(errno));
	if (g == 0) {
		me.name = "G";
		if (setpgid(0, 0))
			note("setpgid: %s", test_strerror(errno));
		if (must_fork("Q") == 0)
			checked("Q", r, getpgid(0), rsid, 0);
		child_exit();
	}
	if (waitpid(g, &status, 0) != g || status)
		fail("G ended with %#x", status);

	/* D: W in the session of Z, which stays a zombie. */
	z = fork();
	if (z < 0)
		fail("fork Z: %s", test_strerror(errno));
	if (z == 0) {
		me.name = "Z";
		if (setsid() < 0)
			note("setsid: %s", test_strerror(errno));
		if (must_fork("W") == 0)
			checked("W", r, getpgid(0), getsid(0), 0);
		child_exit();
	}
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, z, &si, WEXITED | WNOWAIT) || si.si_pid != z || si.si_status)
		fail("Z did not end well: %s, status %d", test_strerror(errno), si.si_status);

	/* E: K forked by P before P's setsid. */
	pid = fork();
	if (pid < 0)
		fail("fork P: %s", test_strerror(errno));
	if (pid == 0) {
		pid_t self = getpid(), kpid = must_fork("K");

		if (kpid == 0)
			checked("K", self, rpgid, rsid, 0);
		me.name = "P";
		if (setsid() < 0)
			note("setsid: %s", test_strerror(errno));
		checked("P", r, self, self, kpid);
	}

	/* F: A1 in the group of B1, forked after it. */
	pid = fork();
	if (pid < 0)
		fail("fork A1: %s", test_strerror(errno));
	if (pid == 0) {
		/* R puts A1 in B1's group once B1 is forked. */
		while (getpgid(0) == rpgid)
			usleep(1000);
		checked("A1", r, getpgid(0), rsid, 0);
	}
	b1 = fork();
	if (b1 < 0)
		fail("fork B1: %s", test_strerror(errno));
	if (b1 == 0) {
		if (setpgid(0, 0))
			note("setpgid: %s", test_strerror(errno));
		checked("B1", r, getpid(), rsid, 0);
	}
	if (setpgid(b1, b1) && errno != EACCES)
		fail("setpgid(B1): %s", test_strerror(errno));
	if (setpgid(pid, b1))
		fail("setpgid(A1, B1): %s", test_strerror(errno));

	/* G: P2 in the group of its child C2. */
	p2 = fork();
	if (p2 < 0)
		fail("fork P2: %s", test_strerror(errno));
	if (p2 == 0) {
		pid_t self = getpid();

		me.name = "P2";
		c2 = must_fork("C2");
		if (c2 == 0) {
			if (setpgid(0, 0))
				note("setpgid: %s", test_strerror(errno));
			checked("C2", self, getpid(), rsid, 0);
		}
		if (setpgid(c2, c2) && errno != EACCES)
			note("setpgid(C2): %s", test_strerror(errno));
		if (setpgid(0, c2))
			note("setpgid(0, C2): %s", test_strerror(errno));
		checked("P2", r, c2, rsid, c2);
	}

	close(ready_pipe[1]);
	close(pid_pipe[1]);
	while (got < 12 && read(ready_pipe[0], &c, 1) == 1)
		got++;
	if (got != 12)
		fail("only %d of 12 processes set up", got);
	/* Every checked process gets SIGTERM from R, once. */

	for (k = 0; k < 12; k++) {
		if (read(pid_pipe[0], &pid, sizeof(pid)) != sizeof(pid))
			fail("read pids: %s", test_strerror(errno));
		kids[n++] = pid;
	}
	close(ready_pipe[0]);
	close(pid_pipe[0]);
	if (getpgid(z) != z || getsid(z) != z)
		fail("setup: zombie Z (%d) in group %d, session %d", z, getpgid(z), getsid(z));

	test_ready();
	test_wait_stop();

	check_own("after SIGTERM");
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, z, &si, WEXITED | WNOWAIT) || si.si_pid != z)
		note("Z (%d) is no zombie of R's: %s", z, test_strerror(errno));
	if (getpgid(z) != z || getsid(z) != z)
		note("zombie Z (%d) in group %d, session %d after restore, want its own", z, getpgid(z), getsid(z));
	for (k = 0; k < n; k++)
		kill(kids[k], SIGTERM);
	if (waitpid(z, &status, 0) != z)
		note("reap Z: %s", test_strerror(errno));
	/* Reap R's children: L, P, A1, B1, P2, M1, O, Q, W. */
	deadline = time(NULL) + 6;
	left = 9;
	while (left > 0) {
		pid = waitpid(-1, &status, WNOHANG);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid < 0) {
			note("waitpid with %d children left: %s", left, test_strerror(errno));
			break;
		}
		if (pid == 0) {
			if (time(NULL) >= deadline) {
				note("%d children did not exit within 6 s of SIGTERM", left);
				break;
			}
			usleep(10 * 1000);
			continue;
		}
		left--;
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			note("child %d ended with status %#x", pid, status);
	}
	if (errors[0])
		fail("R (pid %d): %s", r, errors);
	pass();
}
