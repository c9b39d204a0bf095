/*
 * shell_job00 - a job run from a shell: stdin, stdout and stderr are its
 * terminal.  Not run by TestZdtm: test/shelljob_test.go starts it on a
 * pty of its own, as the leader of a session that pty controls, and
 * dumps and restores it with --shell-job.
 *
 * Setup: fds 0, 1 and 2 must be one terminal.  The job puts it in a mode
 * of its own, as an editor would (no ICANON, no ECHO, VMIN 2, VTIME 5,
 * VERASE ^H) and sets the window to 33x77.  It records its PID, session,
 * process group, whether it leads its session and whether its group is
 * in the foreground of the terminal.  It also holds /dev/tty open, a file
 * the dump records by that path, as a regular file.
 *
 * After SIGTERM: fds 0-2 are still terminals, all one device; termios
 * and window size are the ones set up (the driver changes both between
 * dump and restore: amber must bring them back); a session leader still
 * leads its session, with the terminal as controlling terminal; a
 * foreground group is still in the foreground (tcgetpgrp(0) ==
 * getpgrp()); the /dev/tty file is a terminal (amber's, as CRIU gives
 * it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "zdtm.h"

static struct termios want;
static struct winsize want_ws = {.ws_row = 33, .ws_col = 77};

/* The device of fds 0-2, which must be one terminal. */
static dev_t terminal(void)
{
	struct stat st;
	dev_t dev = 0;

	for (int fd = 0; fd <= 2; fd++) {
		if (!isatty(fd))
			fail("fd %d is not a terminal", fd);
		if (fstat(fd, &st))
			fail("fstat fd %d: %s", fd, test_strerror(errno));
		if (fd > 0 && st.st_rdev != dev)
			fail("fd %d is device %#lx, fd 0 %#lx", fd, (unsigned long)st.st_rdev, (unsigned long)dev);
		dev = st.st_rdev;
	}
	return dev;
}

static void set_mode(void)
{
	if (tcgetattr(0, &want))
		fail("tcgetattr: %s", test_strerror(errno));
	want.c_lflag &= ~(ICANON | ECHO);
	want.c_cc[VMIN] = 2;
	want.c_cc[VTIME] = 5;
	want.c_cc[VERASE] = 8;
	if (tcsetattr(0, TCSANOW, &want) || tcgetattr(0, &want))
		fail("tcsetattr: %s", test_strerror(errno));
	if (ioctl(0, TIOCSWINSZ, &want_ws))
		fail("TIOCSWINSZ: %s", test_strerror(errno));
}

static void check_mode(void)
{
	struct termios t;
	struct winsize ws;

	if (tcgetattr(0, &t))
		fail("tcgetattr: %s", test_strerror(errno));
	if (t.c_iflag != want.c_iflag || t.c_oflag != want.c_oflag || t.c_cflag != want.c_cflag ||
	    t.c_lflag != want.c_lflag || memcmp(t.c_cc, want.c_cc, sizeof(t.c_cc)))
		fail("termios: iflag %#x oflag %#x cflag %#x lflag %#x VMIN %d VTIME %d, want %#x %#x %#x %#x %d %d",
		     t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag, t.c_cc[VMIN], t.c_cc[VTIME], want.c_iflag,
		     want.c_oflag, want.c_cflag, want.c_lflag, want.c_cc[VMIN], want.c_cc[VTIME]);
	if (ioctl(0, TIOCGWINSZ, &ws))
		fail("TIOCGWINSZ: %s", test_strerror(errno));
	if (ws.ws_row != want_ws.ws_row || ws.ws_col != want_ws.ws_col)
		fail("window %dx%d, want %dx%d", ws.ws_row, ws.ws_col, want_ws.ws_row, want_ws.ws_col);
}

int main(void)
{
	pid_t pid, sid, pgrp;
	dev_t dev;
	int leader, foreground, devtty;

	test_init();
	dev = terminal();
	set_mode();
	pid = getpid();
	sid = getsid(0);
	pgrp = getpgrp();
	leader = sid == pid;
	foreground = tcgetpgrp(0) == pgrp;
	devtty = open("/dev/tty", O_RDWR);
	if (devtty < 0)
		fail("open /dev/tty: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	if (terminal() != dev)
		fail("the terminal is device %#lx now, was %#lx", (unsigned long)terminal(), (unsigned long)dev);
	check_mode();
	if (getpid() != pid)
		fail("pid %d, was %d", getpid(), pid);
	if (leader && getsid(0) != pid)
		fail("session %d: pid %d led its session", getsid(0), pid);
	if (leader && ioctl(0, TIOCGSID, &sid))
		fail("the terminal is not the controlling terminal of session %d: %s", pid, test_strerror(errno));
	if (foreground && tcgetpgrp(0) != getpgrp())
		fail("process group %d is not in the foreground (%d is): it was", getpgrp(), tcgetpgrp(0));
	if (!isatty(devtty))
		fail("the /dev/tty file is no terminal: %s", test_strerror(errno));
	pass();
}
