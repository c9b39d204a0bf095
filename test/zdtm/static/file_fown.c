/*
 * file_fown - file owners survive a checkpoint (CRIU's file_fown).
 *
 * Pipe A is owned by the process itself, signals with SIGUSR1 and is
 * O_ASYNC; pipe B is owned by a child (a process restored after its
 * parent) and signals with SIGUSR2.  After SIGTERM F_GETOWN, F_GETSIG
 * and F_GETFL must say the same, and a write into A must raise SIGUSR1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

static volatile sig_atomic_t got;

static void on_usr1(int sig)
{
	(void)sig;
	got++;
}

static void check(int fd, const char *what, pid_t owner, int sig, int async)
{
	int fl = fcntl(fd, F_GETFL);

	if (fcntl(fd, F_GETOWN) != owner)
		fail("%s: owner %d, want %d", what, fcntl(fd, F_GETOWN), owner);
	if (fcntl(fd, F_GETSIG) != sig)
		fail("%s: signal %d, want %d", what, fcntl(fd, F_GETSIG), sig);
	if (!!(fl & O_ASYNC) != async)
		fail("%s: flags %#o, O_ASYNC wanted: %d", what, fl, async);
}

int main(void)
{
	int a[2], b[2];
	pid_t child;
	char c;

	test_init();
	signal(SIGUSR1, on_usr1);
	if (pipe(a) || pipe(b))
		fail("pipe: %s", strerror(errno));
	child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		for (;;)
			pause();
	}
	if (fcntl(a[0], F_SETOWN, getpid()) || fcntl(a[0], F_SETSIG, SIGUSR1) ||
	    fcntl(a[0], F_SETFL, fcntl(a[0], F_GETFL) | O_ASYNC) ||
	    fcntl(b[1], F_SETOWN, child) || fcntl(b[1], F_SETSIG, SIGUSR2))
		fail("fcntl: %s", strerror(errno));
	check(a[0], "pipe A", getpid(), SIGUSR1, 1);
	check(b[1], "pipe B", child, SIGUSR2, 0);
	test_ready();
	test_wait_stop();
	check(a[0], "pipe A", getpid(), SIGUSR1, 1);
	check(b[1], "pipe B", child, SIGUSR2, 0);
	if (write(a[1], "x", 1) != 1 || read(a[0], &c, 1) != 1)
		fail("pipe A: %s", strerror(errno));
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	if (got != 1)
		fail("SIGUSR1 came %d times from pipe A, want once", (int)got);
	pass();
}
