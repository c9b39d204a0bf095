/*
 * pgrp_session - process groups and sessions of a small tree.
 *
 * The root R is started by the driver in a session of its own (setsid), so
 * it normally leads its session and its group, but it only records what it
 * has.  It forks:
 *   A, B, C  in a new process group led by A (setpgid, done by both the
 *            parent and the child, as shells do), in R's session;
 *   D        which calls setsid(): a new session and group led by D;
 *   E        (D's child) in a group of its own (setpgid(0, 0)) inside D's
 *            session -- a group that is not its session's.
 * Every process checks its PID, parent PID, group and session right after
 * setting up and writes a byte to a pipe; R prints `ready` when it has all
 * five and has checked everyone's group and session from outside
 * (getpgid(pid), getsid(pid)).
 *
 * After SIGTERM R checks its own IDs and everyone's from outside again,
 * then sends SIGTERM to group A (kill(-A)) and to D, which sends it to
 * group E.  Every process checks getpid(), getppid(), getpgid(0) and
 * getsid(0) are what they were, and exits 0 or 1 (reasons on stderr,
 * prefixed "pgrp_session X (pid P)").  R and D reap their children (6 s,
 * D: 4 s) and R prints PASS only if all exited 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

/* What one process should have. */
struct ids {
	char name;		/* 'R', 'A' .. 'E' */
	pid_t pid, ppid, pgid, sid;
};

static struct ids me;
static int ready_pipe[2];
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

/* A child process: report errors on stderr and exit 1, or exit 0. */
static void child_exit(void) __attribute__((noreturn));
static void child_exit(void)
{
	char line[1200];
	int n;

	if (!errors[0])
		_exit(0);
	n = snprintf(line, sizeof(line), "pgrp_session %c (pid %d): %s\n",
		     me.name, getpid(), errors);
	if (n > (int)sizeof(line) - 1)
		n = sizeof(line) - 1;
	if (write(2, line, n) < 0)
		_exit(1);
	_exit(1);
}

/* Check the calling process's own IDs against me. */
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

/* Check another process's group and session from outside. */
static void check_other(const struct ids *x, const char *when)
{
	pid_t g = getpgid(x->pid), s = getsid(x->pid);

	if (g != x->pgid)
		note("%s: getpgid(%c = %d) is %d, expected %d", when, x->name,
		     x->pid, g, x->pgid);
	if (s != x->sid)
		note("%s: getsid(%c = %d) is %d, expected %d", when, x->name,
		     x->pid, s, x->sid);
}

/* Reap the n processes in kids within timeout seconds; SIGKILL stragglers. */
static void reap(struct ids *kids, int n, int timeout)
{
	time_t deadline = time(NULL) + timeout;
	int k, status, left = n;
	pid_t w;

	while (left > 0) {
		w = waitpid(-1, &status, WNOHANG);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			note("waitpid with %d children left: %s", left,
			     test_strerror(errno));
			break;
		}
		if (w == 0) {
			if (time(NULL) >= deadline)
				break;
			usleep(10 * 1000);
			continue;
		}
		for (k = 0; k < n && kids[k].pid != w; k++)
			;
		if (k == n) {
			note("reaped pid %d, which is not a child", w);
			continue;
		}
		kids[k].pid = -w;
		left--;
		if (WIFSIGNALED(status))
			note("child %c (pid %d) killed by signal %d", kids[k].name,
			     w, WTERMSIG(status));
		else if (WEXITSTATUS(status))
			note("child %c (pid %d) exited with status %d",
			     kids[k].name, w, WEXITSTATUS(status));
	}
	for (k = 0; k < n; k++) {
		if (kids[k].pid <= 0)
			continue;
		note("child %c (pid %d) did not exit within %d s of SIGTERM",
		     kids[k].name, kids[k].pid, timeout);
		kill(kids[k].pid, SIGKILL);
		waitpid(kids[k].pid, &status, 0);
	}
}

/* Send SIGTERM to group pgrp; if that fails, to each of kids directly. */
static void term_group(pid_t pgrp, struct ids *kids, int n)
{
	int k;

	if (kill(-pgrp, SIGTERM) == 0)
		return;
	note("kill(-%d, SIGTERM) (the group): %s", pgrp, test_strerror(errno));
	for (k = 0; k < n; k++)
		kill(kids[k].pid, SIGTERM);
}

static void setup_done(void)
{
	check_own("setup");
	if (errors[0])
		child_exit();
	if (write(ready_pipe[1], "r", 1) != 1)
		_exit(1);
	close(ready_pipe[0]);
	close(ready_pipe[1]);
}

/* Child E: own group in D's session. */
static void run_e(void) __attribute__((noreturn));
static void run_e(void)
{
	if (setpgid(0, 0))
		note("E: setpgid(0, 0): %s", test_strerror(errno));
	setup_done();
	test_wait_stop();
	check_own("after SIGTERM");
	child_exit();
}

/* Child D: a new session, with child E. */
static void run_d(void) __attribute__((noreturn));
static void run_d(void)
{
	struct ids e;

	if (setsid() < 0) {
		note("setsid: %s", test_strerror(errno));
		child_exit();
	}
	e.name = 'E';
	e.ppid = me.pid;
	e.sid = me.sid;
	e.pid = fork();
	if (e.pid < 0) {
		note("fork E: %s", test_strerror(errno));
		child_exit();
	}
	if (e.pid == 0) {
		me = e;
		me.pid = me.pgid = getpid();
		run_e();
	}
	e.pgid = e.pid;
	/* Like a shell: set E's group from here too (EACCES if E was quicker
	 * to exec -- it does not exec, so both calls succeed). */
	if (setpgid(e.pid, e.pid) && errno != EACCES)
		note("setpgid(E, E): %s", test_strerror(errno));
	setup_done();

	test_wait_stop();
	check_own("after SIGTERM");
	check_other(&e, "after SIGTERM");
	term_group(e.pgid, &e, 1);
	reap(&e, 1, 4);
	child_exit();
}

/* Children A, B, C: the group led by A. */
static void run_abc(void) __attribute__((noreturn));
static void run_abc(void)
{
	if (setpgid(0, me.pgid))
		note("setpgid(0, %d): %s", me.pgid, test_strerror(errno));
	setup_done();
	test_wait_stop();
	check_own("after SIGTERM");
	child_exit();
}

int main(void)
{
	struct ids kids[4];	/* A, B, C, D */
	char buf[8];
	size_t got = 0;
	ssize_t n;
	int k;

	test_init();
	me.name = 'R';
	me.pid = getpid();
	me.ppid = getppid();
	me.pgid = getpgid(0);
	me.sid = getsid(0);
	if (pipe(ready_pipe))
		fail("pipe: %s", test_strerror(errno));

	for (k = 0; k < 4; k++) {
		kids[k].name = 'A' + k;
		kids[k].ppid = me.pid;
		kids[k].sid = me.sid;
		kids[k].pgid = k ? kids[0].pid : 0;	/* A's: filled in below */
		kids[k].pid = fork();
		if (kids[k].pid < 0)
			fail("fork %c: %s", kids[k].name, test_strerror(errno));
		if (kids[k].pid == 0) {
			me = kids[k];
			me.pid = getpid();
			if (k == 0)
				me.pgid = me.pid;
			if (k == 3) {
				me.pgid = me.sid = me.pid;
				run_d();
			}
			run_abc();
		}
		if (k == 0)
			kids[0].pgid = kids[0].pid;
		if (k == 3) {
			kids[3].pgid = kids[3].sid = kids[3].pid;
		} else if (setpgid(kids[k].pid, kids[k].pgid) && errno != EACCES) {
			fail("setpgid(%c = %d, %d): %s", kids[k].name, kids[k].pid,
			     kids[k].pgid, test_strerror(errno));
		}
	}
	close(ready_pipe[1]);
	while (got < 5) {
		n = read(ready_pipe[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	close(ready_pipe[0]);
	if (got != 5) {
		for (k = 0; k < 4; k++)
			kill(kids[k].pid, SIGTERM);
		reap(kids, 4, 2);
		fail("only %zu of 5 processes set up%s%s", got,
		     errors[0] ? ": " : "", errors);
	}
	check_own("before ready");
	for (k = 0; k < 4; k++)
		check_other(&kids[k], "before ready");
	if (errors[0])
		fail("%s", errors);

	test_ready();
	test_wait_stop();

	check_own("after SIGTERM");
	for (k = 0; k < 4; k++)
		check_other(&kids[k], "after SIGTERM");
	term_group(kids[0].pid, kids, 3);
	if (kill(kids[3].pid, SIGTERM))
		note("kill(D = %d, SIGTERM): %s", kids[3].pid, test_strerror(errno));
	reap(kids, 4, 6);
	if (errors[0])
		fail("R (pid %d): %s", me.pid, errors);
	pass();
}
