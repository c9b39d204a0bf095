/*
 * fork_churn - a parent that forks children which exit at once, eight at
 * a time, and reaps them, all the while (zdtm's transition/fork2): a
 * dump freezes the tree with children exiting under it.
 *
 * After SIGTERM: the parent reaps what is left; every child it reaped
 * was one it forked and exited with status 7 (zombies come back as
 * zombies), none is missing and no other child exists.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define KIDS 8

static pid_t kids[KIDS];
static int nkids;
static long forked, reaped;

static void take(pid_t w, int st)
{
	int i;

	for (i = 0; i < nkids && kids[i] != w; i++)
		;
	if (i == nkids)
		fail("reaped pid %d, which it did not fork", w);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 7)
		fail("child %d: status %#x, want exit 7", w, st);
	kids[i] = kids[--nkids];
	reaped++;
}

int main(void)
{
	int st;
	pid_t w;

	test_init();
	test_ready();
	while (!test_stopped()) {
		while (nkids < KIDS) {
			pid_t p = fork();
			if (p < 0)
				fail("fork: %s", test_strerror(errno));
			if (p == 0)
				_exit(7);
			kids[nkids++] = p;
			forked++;
		}
		w = waitpid(-1, &st, 0);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			fail("waitpid: %s", test_strerror(errno));
		take(w, st);
	}
	while (nkids > 0) {
		w = waitpid(-1, &st, 0);
		if (w < 0)
			fail("waitpid with %d children left: %s", nkids, test_strerror(errno));
		take(w, st);
	}
	if (waitpid(-1, &st, WNOHANG) != -1 || errno != ECHILD)
		fail("a child it never forked");
	if (forked != reaped)
		fail("forked %ld, reaped %ld", forked, reaped);
	pass();
}
