/*
 * vt_ctty - a virtual terminal (4:9, through a node made in the cwd)
 * that the test, a session leader without a controlling terminal, opens
 * without O_NOCTTY: it becomes its controlling terminal. A second file
 * of it is open O_RDWR|O_NOCTTY.
 *
 * After SIGTERM: both descriptors are that terminal with their access
 * modes, it is still the controlling terminal (tty_nr in /proc/self/stat,
 * TIOCGSID gives our session, /dev/tty opens).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "zdtm.h"

#define VT_MINOR 9

/* tty_nr is the controlling terminal's device in /proc/self/stat. */
static int tty_nr(void)
{
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "r");
	if (!f || !fgets(buf, sizeof(buf), f))
		fail("read /proc/self/stat: %s", test_strerror(errno));
	fclose(f);
	char *p = strrchr(buf, ')');
	int nr = -1;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %d", &nr) != 1)
		fail("parse /proc/self/stat: %s", buf);
	return nr;
}

static void check(int fd, int mode, const char *what)
{
	struct stat st;
	if (fstat(fd, &st))
		fail("%s: fstat: %s", what, test_strerror(errno));
	if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(4, VT_MINOR))
		fail("%s: device %u:%u, want 4:%d", what, major(st.st_rdev), minor(st.st_rdev), VT_MINOR);
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) != mode)
		fail("%s: flags %#x, want access mode %#x", what, fl, mode);
}

int main(void)
{
	const int want = (4 << 8) | VT_MINOR; /* new_encode_dev(4:9) */
	test_init();
	unlink("vt.node");
	if (mknod("vt.node", S_IFCHR | 0600, makedev(4, VT_MINOR)))
		fail("mknod: %s", test_strerror(errno));
	if (getsid(0) != getpid())
		fail("not a session leader");
	int ro = open("vt.node", O_RDONLY);
	if (ro < 0)
		fail("open the virtual terminal: %s", test_strerror(errno));
	int rw = open("vt.node", O_RDWR | O_NOCTTY);
	if (rw < 0)
		fail("open the virtual terminal again: %s", test_strerror(errno));
	if (tty_nr() != want)
		fail("tty_nr %#x after opening it, want %#x: not our controlling terminal", tty_nr(), want);

	test_ready();
	test_wait_stop();

	check(ro, O_RDONLY, "first file");
	check(rw, O_RDWR, "second file");
	if (tty_nr() != want)
		fail("tty_nr %#x, want %#x: not our controlling terminal any more", tty_nr(), want);
	pid_t sid;
	if (ioctl(rw, TIOCGSID, &sid) || sid != getpid())
		fail("TIOCGSID: %d (%s), want our session %d", sid, test_strerror(errno), getpid());
	int ctty = open("/dev/tty", O_RDWR);
	if (ctty < 0)
		fail("open /dev/tty: %s", test_strerror(errno));
	close(ctty);
	unlink("vt.node");
	pass();
}
