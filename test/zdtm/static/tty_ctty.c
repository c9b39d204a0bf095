/*
 * tty_ctty - /dev/tty over a pty of the tree, and a console node, held
 * by a dump without --shell-job.
 *
 * The test (a session leader, started with setsid) opens a pty: its
 * slave becomes the controlling terminal; then /dev/tty, and a node of
 * the console (5:1) it makes in the cwd, read-only.  Bytes written on
 * the master wait for the slave.
 *
 * After SIGTERM: the /dev/tty descriptor is still /dev/tty (5:0) and
 * the terminal it leads to controls this session (TIOCGSID); it reads
 * the bytes written before the dump, then what the master writes after;
 * the console descriptor is still the console (5:1).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include "zdtm.h"

static void expect_line(int fd, const char *want, const char *what)
{
	char buf[64];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 5000) != 1)
		fail("%s: nothing to read", what);
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n != (ssize_t)strlen(want) || memcmp(buf, want, n))
		fail("%s: read %zd bytes \"%.*s\", want \"%s\"", what, n, n > 0 ? (int)n : 0, buf, want);
}

static void expect_rdev(int fd, unsigned maj, unsigned min, const char *what)
{
	struct stat st;
	if (fstat(fd, &st) || !S_ISCHR(st.st_mode) || major(st.st_rdev) != maj || minor(st.st_rdev) != min)
		fail("%s: device %u:%u, want %u:%u", what, major(st.st_rdev), minor(st.st_rdev), maj, min);
}

int main(void)
{
	test_init();
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m))
		fail("posix_openpt: %s", test_strerror(errno));
	int s = open(ptsname(m), O_RDWR);
	if (s < 0)
		fail("open %s: %s", ptsname(m), test_strerror(errno));
	struct termios t;
	if (tcgetattr(s, &t))
		fail("tcgetattr: %s", test_strerror(errno));
	cfmakeraw(&t);
	if (tcsetattr(s, TCSANOW, &t))
		fail("tcsetattr: %s", test_strerror(errno));
	int tty = open("/dev/tty", O_RDWR);
	if (tty < 0)
		fail("open /dev/tty: %s", test_strerror(errno));
	unlink("console");
	if (mknod("console", S_IFCHR | 0600, makedev(5, 1)))
		fail("mknod console: %s", test_strerror(errno));
	int con = open("console", O_RDONLY);
	if (con < 0)
		fail("open the console node: %s", test_strerror(errno));
	if (write(m, "before", 6) != 6)
		fail("write on the master: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	expect_rdev(tty, 5, 0, "/dev/tty");
	pid_t sid;
	if (ioctl(tty, TIOCGSID, &sid) || sid != getsid(0))
		fail("/dev/tty: TIOCGSID %d (%s), want this session %d", sid, test_strerror(errno), getsid(0));
	expect_line(tty, "before", "/dev/tty, what the master wrote before the dump");
	if (write(m, "after", 5) != 5)
		fail("write on the master after: %s", test_strerror(errno));
	expect_line(tty, "after", "/dev/tty, what the master wrote after");
	expect_rdev(con, 5, 1, "the console node");
	pass();
}
