/*
 * zombie - a process checkpointed with two unreaped (zombie) children.
 *
 * The parent forks child A, which exits with status 42 at once, and child
 * B, which sleeps until the parent kills it with SIGKILL.  With SIGCHLD at
 * SIG_DFL the parent waits for both to die with waitid(WNOWAIT), which
 * leaves them unreaped, checks /proc shows them as zombies (state Z, its
 * own PID as their parent), and prints `ready`: both are zombies during
 * the checkpoint.
 *
 * After SIGTERM the parent checks again, without reaping, that waitid()
 * reports A as exited with 42 (CLD_EXITED) and B as killed by 9
 * (CLD_KILLED) under their old PIDs, and /proc shows them as its zombies;
 * then it reaps both with waitpid() and checks the statuses (WIFEXITED and
 * 42; WIFSIGNALED and SIGKILL), and that no other child is left (ECHILD).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

static pid_t zpid[2];
static const char *zname[2] = { "A (exit 42)", "B (SIGKILL)" };

/* Read state and parent PID of pid from /proc/PID/stat. */
static int proc_state(pid_t pid, char *state, pid_t *ppid)
{
	char path[64], buf[512], *p;
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	ok = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	if (!ok || !(p = strrchr(buf, ')')))
		return -1;
	return sscanf(p + 1, " %c %d", state, ppid) == 2 ? 0 : -1;
}

/* Check, without reaping, that child i is a zombie with the right status. */
static void check_zombie(int i, const char *when)
{
	siginfo_t si;
	pid_t ppid;
	char state;

	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, zpid[i], &si, WEXITED | WNOHANG | WNOWAIT))
		fail("%s: waitid(child %s, pid %d, WNOWAIT): %s", when, zname[i],
		     zpid[i], test_strerror(errno));
	if (si.si_pid != zpid[i])
		fail("%s: child %s (pid %d) is not waitable (waitid si_pid %d)",
		     when, zname[i], zpid[i], si.si_pid);
	if (i == 0 && (si.si_code != CLD_EXITED || si.si_status != 42))
		fail("%s: child %s (pid %d): si_code %d si_status %d, expected "
		     "CLD_EXITED (%d) and 42", when, zname[i], zpid[i],
		     si.si_code, si.si_status, CLD_EXITED);
	if (i == 1 && (si.si_code != CLD_KILLED || si.si_status != SIGKILL))
		fail("%s: child %s (pid %d): si_code %d si_status %d, expected "
		     "CLD_KILLED (%d) and %d", when, zname[i], zpid[i],
		     si.si_code, si.si_status, CLD_KILLED, SIGKILL);
	if (proc_state(zpid[i], &state, &ppid))
		fail("%s: child %s (pid %d): cannot read /proc/%d/stat", when,
		     zname[i], zpid[i], zpid[i]);
	if (state != 'Z' || ppid != getpid())
		fail("%s: child %s (pid %d): state %c, parent %d; expected a "
		     "zombie (Z) of pid %d", when, zname[i], zpid[i], state, ppid,
		     getpid());
}

int main(void)
{
	struct sigaction sa;
	siginfo_t si;
	int i, status;
	pid_t w;

	test_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	if (sigaction(SIGCHLD, &sa, NULL))
		fail("sigaction(SIGCHLD, SIG_DFL): %s", test_strerror(errno));

	zpid[0] = fork();
	if (zpid[0] < 0)
		fail("fork: %s", test_strerror(errno));
	if (zpid[0] == 0)
		_exit(42);
	zpid[1] = fork();
	if (zpid[1] < 0)
		fail("fork: %s", test_strerror(errno));
	if (zpid[1] == 0) {
		for (;;)
			pause();
	}
	if (kill(zpid[1], SIGKILL))
		fail("kill(child B, SIGKILL): %s", test_strerror(errno));

	/* Wait for both to die, leaving them unreaped. */
	for (i = 0; i < 2; i++) {
		memset(&si, 0, sizeof(si));
		while (waitid(P_PID, zpid[i], &si, WEXITED | WNOWAIT))
			if (errno != EINTR)
				fail("waitid(child %s, WNOWAIT): %s", zname[i],
				     test_strerror(errno));
	}
	check_zombie(0, "before ready");
	check_zombie(1, "before ready");

	test_ready();
	test_wait_stop();

	check_zombie(0, "after SIGTERM");
	check_zombie(1, "after SIGTERM");

	for (i = 0; i < 2; i++) {
		do
			w = waitpid(zpid[i], &status, WNOHANG);
		while (w < 0 && errno == EINTR);
		if (w != zpid[i])
			fail("waitpid(child %s, pid %d) returned %d: %s", zname[i],
			     zpid[i], w, w < 0 ? test_strerror(errno) : "not dead");
		if (i == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 42))
			fail("child %s (pid %d): wait status %#x, expected exit 42",
			     zname[i], zpid[i], status);
		if (i == 1 && !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
			fail("child %s (pid %d): wait status %#x, expected killed "
			     "by SIGKILL", zname[i], zpid[i], status);
	}
	w = waitpid(-1, &status, WNOHANG);
	if (w >= 0 || errno != ECHILD)
		fail("after reaping both zombies, waitpid(-1) returned %d (%s), "
		     "expected ECHILD", w, w < 0 ? test_strerror(errno) : "a child");
	pass();
}
