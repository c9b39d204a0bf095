/*
 * pty01 - a pty that is the controlling terminal of the session, with
 * another process group in the foreground.
 *
 * The root R (a session leader, started with setsid) opens a pty, makes
 * its slave R's controlling terminal (TIOCSCTTY) and forks C, which gets
 * a process group of its own (setpgid by both, as a shell does) and is
 * put in the foreground (tcsetpgrp).  R holds the master and the slave,
 * C the slave (inherited).
 *
 * After SIGTERM, R checks through the master and the slave that the
 * terminal controls R's session (TIOCGSID) with C's group in the
 * foreground, then sends SIGTERM to C.  C checks that it has a
 * controlling terminal, that the terminal controls R's session and that
 * its own group is in the foreground, and writes a byte to /dev/tty; it
 * exits 0, or 1 with reasons on stderr.  R reaps C and says PASS only if
 * C exited 0 and the byte came out of R's master: /dev/tty was this pty.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "zdtm.h"

static int master, slave;
static pid_t root;

/* C's checks after SIGTERM; the reasons go to stderr. */
static int check_child(void)
{
	pid_t sid = -1;
	int bad = 0, fd = open("/dev/tty", O_RDWR | O_NOCTTY);

	if (fd < 0) {
		fprintf(stderr, "pty01 C: no controlling terminal: open /dev/tty: %s\n", test_strerror(errno));
		bad = 1;
	}
	if (ioctl(slave, TIOCGSID, &sid) || sid != root) {
		fprintf(stderr, "pty01 C: the slave controls session %d (%s), want %d\n", sid, test_strerror(errno), root);
		bad = 1;
	}
	if (tcgetpgrp(slave) != getpgrp() || getpgrp() != getpid()) {
		fprintf(stderr, "pty01 C: foreground %d, my group %d, want mine, %d\n", tcgetpgrp(slave), getpgrp(), getpid());
		bad = 1;
	}
	if (fd >= 0 && write(fd, "C", 1) != 1) {
		fprintf(stderr, "pty01 C: write to /dev/tty: %s\n", test_strerror(errno));
		bad = 1;
	}
	return bad;
}

static void run_child(int ready)
{
	if (setpgid(0, 0))
		_exit(2);
	close(master);
	if (write(ready, "r", 1) != 1)
		_exit(2);
	close(ready);
	test_wait_stop();
	_exit(check_child());
}

static pid_t start_child(void)
{
	int p[2];
	char c;
	pid_t pid;

	if (pipe(p))
		fail("pipe: %s", test_strerror(errno));
	pid = fork();
	if (pid < 0)
		fail("fork: %s", test_strerror(errno));
	if (pid == 0) {
		close(p[0]);
		run_child(p[1]);
	}
	close(p[1]);
	if (setpgid(pid, pid) && errno != EACCES)
		fail("setpgid(%d): %s", pid, test_strerror(errno));
	if (read(p[0], &c, 1) != 1)
		fail("child C did not get ready");
	close(p[0]);
	if (tcsetpgrp(slave, pid))
		fail("tcsetpgrp(%d): %s", pid, test_strerror(errno));
	return pid;
}

static void check_root(pid_t child)
{
	pid_t sid = -1;

	if (getsid(0) != root || getpgrp() != root)
		fail("R: session %d group %d, want %d", getsid(0), getpgrp(), root);
	if (ioctl(master, TIOCGSID, &sid) || sid != root)
		fail("the master says session %d (%s), want %d", sid, test_strerror(errno), root);
	if (ioctl(slave, TIOCGSID, &sid) || sid != root)
		fail("the slave says session %d (%s): it is not R's controlling terminal", sid, test_strerror(errno));
	if (tcgetpgrp(master) != child || tcgetpgrp(slave) != child)
		fail("foreground %d/%d through master/slave, want C's group %d", tcgetpgrp(master), tcgetpgrp(slave), child);
}

static void check_child_output(void)
{
	struct pollfd p = {.fd = master, .events = POLLIN};
	char c = 0;

	if (poll(&p, 1, 5000) != 1 || read(master, &c, 1) != 1 || c != 'C')
		fail("C's byte did not reach the master (got %#x)", c);
}

int main(void)
{
	pid_t child;
	int status;

	test_init();
	root = getpid();
	if (getsid(0) != root)
		fail("not a session leader: start pty01 with setsid");
	master = posix_openpt(O_RDWR | O_NOCTTY);
	if (master < 0 || grantpt(master) || unlockpt(master))
		fail("posix_openpt: %s", test_strerror(errno));
	slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	if (slave < 0 || ioctl(slave, TIOCSCTTY, 0))
		fail("slave as controlling terminal: %s", test_strerror(errno));
	child = start_child();

	test_ready();
	test_wait_stop();

	check_root(child);
	if (kill(child, SIGTERM))
		fail("SIGTERM to C: %s", test_strerror(errno));
	if (waitpid(child, &status, 0) != child)
		fail("waitpid C: %s", test_strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("C ended with status %#x", status);
	check_child_output();
	pass();
}
