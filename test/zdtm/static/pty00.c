/*
 * pty00 - a pty pair held by the process, with its terminal state and
 * bytes queued both ways.
 *
 * Pty A: posix_openpt(O_RDWR|O_NOCTTY), grantpt, unlockpt, the slave
 * opened O_RDWR|O_NOCTTY; the master made O_NONBLOCK.  On the slave: raw
 * mode (no ICANON, ECHO, ISIG, IEXTEN, OPOST, ICRNL, IXON) plus IGNPAR,
 * CS8, VMIN 3, VTIME 7, VINTR ^P, 9600 baud, window 33x77 (640x480
 * pixels), exclusive mode (TIOCEXCL).  "to the slave" is written into the
 * master and "to the master" into the slave; neither is read.
 * Pty B: a master left locked (no unlockpt) in packet mode (TIOCPKT).
 *
 * After SIGTERM: both masters still have their index and the slave its
 * path (/dev/pts/N); the flags (O_NONBLOCK on A's master); termios and
 * window size, read through the slave and the master; exclusive mode;
 * B locked (opening its slave fails) and in packet mode.  Then the
 * queued bytes: the slave reads exactly "to the slave", the master
 * exactly "to the master" (a bonus of the dump: a terminal never
 * promised delivery, but amber keeps them).  Last, bytes written into
 * the master come out of the slave and the other way round.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "zdtm.h"

#define TO_SLAVE "to the slave"
#define TO_MASTER "to the master"

static struct termios want;
static struct winsize want_ws = {.ws_row = 33, .ws_col = 77, .ws_xpixel = 640, .ws_ypixel = 480};

static int open_pair(int *slave, char *path, size_t len)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY);

	if (m < 0 || grantpt(m) || unlockpt(m))
		fail("posix_openpt/grantpt/unlockpt: %s", test_strerror(errno));
	if (ptsname_r(m, path, len))
		fail("ptsname_r: %s", test_strerror(errno));
	*slave = open(path, O_RDWR | O_NOCTTY);
	if (*slave < 0)
		fail("open %s: %s", path, test_strerror(errno));
	return m;
}

static void set_state(int s)
{
	if (tcgetattr(s, &want))
		fail("tcgetattr: %s", test_strerror(errno));
	want.c_iflag &= ~(ICRNL | IXON | BRKINT | INPCK | ISTRIP);
	want.c_iflag |= IGNPAR;
	want.c_oflag &= ~OPOST;
	want.c_lflag &= ~(ICANON | ECHO | ECHONL | ISIG | IEXTEN);
	want.c_cflag = (want.c_cflag & ~(CSIZE | PARENB)) | CS8;
	want.c_cc[VMIN] = 3;
	want.c_cc[VTIME] = 7;
	want.c_cc[VINTR] = 0x10;
	if (cfsetispeed(&want, B9600) || cfsetospeed(&want, B9600))
		fail("cfsetspeed: %s", test_strerror(errno));
	if (tcsetattr(s, TCSANOW, &want))
		fail("tcsetattr: %s", test_strerror(errno));
	if (ioctl(s, TIOCSWINSZ, &want_ws))
		fail("TIOCSWINSZ: %s", test_strerror(errno));
	if (ioctl(s, TIOCEXCL))
		fail("TIOCEXCL: %s", test_strerror(errno));
}

static void check_termios(int fd, const char *which)
{
	struct termios t;
	struct winsize ws;

	if (tcgetattr(fd, &t))
		fail("tcgetattr on the %s: %s", which, test_strerror(errno));
	if (t.c_iflag != want.c_iflag || t.c_oflag != want.c_oflag || t.c_cflag != want.c_cflag ||
	    t.c_lflag != want.c_lflag)
		fail("termios through the %s: iflag %#x oflag %#x cflag %#x lflag %#x, want %#x %#x %#x %#x", which,
		     t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag, want.c_iflag, want.c_oflag, want.c_cflag, want.c_lflag);
	if (memcmp(t.c_cc, want.c_cc, sizeof(t.c_cc)))
		fail("termios through the %s: control characters differ (VMIN %d VTIME %d VINTR %#x)", which,
		     t.c_cc[VMIN], t.c_cc[VTIME], t.c_cc[VINTR]);
	if (cfgetispeed(&t) != B9600 || cfgetospeed(&t) != B9600)
		fail("termios through the %s: speeds %#x/%#x, want B9600", which, cfgetispeed(&t), cfgetospeed(&t));
	if (ioctl(fd, TIOCGWINSZ, &ws))
		fail("TIOCGWINSZ on the %s: %s", which, test_strerror(errno));
	if (memcmp(&ws, &want_ws, sizeof(ws)))
		fail("window size through the %s: %dx%d (%dx%d px), want 33x77 (640x480)", which, ws.ws_row,
		     ws.ws_col, ws.ws_xpixel, ws.ws_ypixel);
}

static int ioctl_int(int fd, unsigned long req, const char *what)
{
	int v = -1;

	if (ioctl(fd, req, &v))
		fail("%s: %s", what, test_strerror(errno));
	return v;
}

/* Read exactly what is queued on non-blocking fd (up to len bytes). */
static size_t drain(int fd, char *buf, size_t len)
{
	size_t got = 0;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 200) <= 0)
			return got;
		ssize_t n = read(fd, buf + got, len - got);
		if (n < 0 && errno == EAGAIN)
			return got;
		if (n <= 0)
			fail("read: %zd (%s)", n, n < 0 ? test_strerror(errno) : "EOF");
		got += n;
		if (got == len)
			return got;
	}
}

static void expect_queue(int fd, const char *want_data, const char *which)
{
	char buf[256];
	size_t n = drain(fd, buf, sizeof(buf) - 1);

	buf[n] = 0;
	if (n != strlen(want_data) || memcmp(buf, want_data, n))
		fail("the %s had %zu bytes queued, \"%s\"; want \"%s\"", which, n, buf, want_data);
}

static void expect_flow(int from, int to, const char *msg)
{
	char buf[64];
	size_t len = strlen(msg), got = 0;

	if (write(from, msg, len) != (ssize_t)len)
		fail("write %s: %s", msg, test_strerror(errno));
	while (got < len) {
		struct pollfd p = {.fd = to, .events = POLLIN};
		if (poll(&p, 1, 5000) <= 0)
			fail("\"%s\" did not arrive (%zu of %zu bytes)", msg, got, len);
		ssize_t n = read(to, buf + got, sizeof(buf) - got);
		if (n <= 0)
			fail("read \"%s\": %zd (%s)", msg, n, n < 0 ? test_strerror(errno) : "EOF");
		got += n;
	}
	if (got != len || memcmp(buf, msg, len))
		fail("sent \"%s\", got %zu bytes \"%.*s\"", msg, len, (int)got, buf);
}

int main(void)
{
	char path[64], now[64];
	int ma, sa, mb, index_a, index_b, s;

	test_init();
	ma = open_pair(&sa, path, sizeof(path));
	set_state(sa);
	if (fcntl(ma, F_SETFL, O_NONBLOCK))
		fail("F_SETFL: %s", test_strerror(errno));
	mb = posix_openpt(O_RDWR | O_NOCTTY);
	if (mb < 0 || ioctl(mb, TIOCPKT, &(int){1}))
		fail("pty B: %s", test_strerror(errno));
	index_a = ioctl_int(ma, TIOCGPTN, "TIOCGPTN A");
	index_b = ioctl_int(mb, TIOCGPTN, "TIOCGPTN B");
	if (write(ma, TO_SLAVE, strlen(TO_SLAVE)) != strlen(TO_SLAVE) ||
	    write(sa, TO_MASTER, strlen(TO_MASTER)) != strlen(TO_MASTER))
		fail("write: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	if (ioctl_int(ma, TIOCGPTN, "TIOCGPTN A") != index_a || ioctl_int(mb, TIOCGPTN, "TIOCGPTN B") != index_b)
		fail("indexes %d/%d, were %d/%d", ioctl_int(ma, TIOCGPTN, "A"), ioctl_int(mb, TIOCGPTN, "B"), index_a,
		     index_b);
	if (ttyname_r(sa, now, sizeof(now)))
		fail("ttyname of the slave: %s", test_strerror(errno));
	if (strcmp(now, path))
		fail("the slave is %s now, was %s", now, path);
	if ((fcntl(ma, F_GETFL) & ~0100000 /* the kernel's O_LARGEFILE */) != (O_RDWR | O_NONBLOCK))
		fail("master A: F_GETFL %#o, want O_RDWR|O_NONBLOCK", fcntl(ma, F_GETFL));
	if ((fcntl(sa, F_GETFL) & O_ACCMODE) != O_RDWR || (fcntl(sa, F_GETFL) & O_NONBLOCK))
		fail("slave A: F_GETFL %#o, want O_RDWR", fcntl(sa, F_GETFL));
	check_termios(sa, "slave");
	check_termios(ma, "master");
	if (ioctl_int(sa, TIOCGEXCL, "TIOCGEXCL") != 1)
		fail("slave A lost its exclusive mode");
	if (ioctl_int(ma, TIOCGPTLCK, "TIOCGPTLCK A") != 0 || ioctl_int(mb, TIOCGPTLCK, "TIOCGPTLCK B") != 1)
		fail("locks %d/%d, want 0/1", ioctl_int(ma, TIOCGPTLCK, "A"), ioctl_int(mb, TIOCGPTLCK, "B"));
	if (ioctl_int(mb, TIOCGPKT, "TIOCGPKT B") != 1 || ioctl_int(ma, TIOCGPKT, "TIOCGPKT A") != 0)
		fail("packet modes A %d B %d, want 0 1", ioctl_int(ma, TIOCGPKT, "A"), ioctl_int(mb, TIOCGPKT, "B"));
	s = ioctl(mb, TIOCGPTPEER, O_RDWR | O_NOCTTY);
	if (s >= 0 || errno != EIO)
		fail("pty B is locked, but its slave opens: %d (%s)", s, s < 0 ? test_strerror(errno) : "");

	if (fcntl(sa, F_SETFL, O_NONBLOCK))
		fail("F_SETFL: %s", test_strerror(errno));
	expect_queue(sa, TO_SLAVE, "slave");
	expect_queue(ma, TO_MASTER, "master");
	expect_flow(ma, sa, "ping");
	expect_flow(sa, ma, "pong");
	pass();
}
