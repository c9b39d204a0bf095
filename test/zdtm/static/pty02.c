/*
 * pty02 - a pty slave whose master was closed: the slave is hung up.
 *
 * The process opens a pty, opens its slave O_RDWR|O_NOCTTY and closes
 * the master.  After SIGTERM the slave must still be hung up, as before
 * the dump: read() returns 0, write() and tcgetattr() fail with EIO;
 * and it is still a pty slave (major 136).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include "zdtm.h"

static void check_hung(int s, const char *when)
{
	struct termios t;
	struct stat st;
	char c;

	if (fstat(s, &st) || !S_ISCHR(st.st_mode) || major(st.st_rdev) != 136)
		fail("%s: fd %d is not a pty slave (%s)", when, s, test_strerror(errno));
	if (read(s, &c, 1) != 0)
		fail("%s: read from the hung-up slave did not return 0: %s", when, test_strerror(errno));
	if (write(s, "x", 1) != -1 || errno != EIO)
		fail("%s: write to the hung-up slave: %s, want EIO", when, test_strerror(errno));
	if (tcgetattr(s, &t) == 0 || errno != EIO)
		fail("%s: tcgetattr on the hung-up slave: %s, want EIO", when, test_strerror(errno));
}

int main(void)
{
	int m, s;

	test_init();
	m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m))
		fail("posix_openpt: %s", test_strerror(errno));
	s = open(ptsname(m), O_RDWR | O_NOCTTY);
	if (s < 0)
		fail("open %s: %s", ptsname(m), test_strerror(errno));
	close(m);
	check_hung(s, "before");

	test_ready();
	test_wait_stop();

	check_hung(s, "after");
	pass();
}
