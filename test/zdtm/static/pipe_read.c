/*
 * pipe_read - a process checkpointed while blocked in read() on an empty
 * pipe it holds both ends of.
 *
 * The SIGTERM handler (installed with SA_RESTART) writes one byte "x" into
 * the pipe.  The read() -- restarted after the handler, or returning EINTR
 * and then retried -- must return exactly that byte.  Afterwards both fds
 * must still be the two ends of one pipe: FIFOs with the same inode, read
 * end O_RDONLY, write end O_WRONLY, and a second byte written to the write
 * end comes out of the read end.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

static int pfd[2];	/* [0] read end, [1] write end; used by the handler */

static void stop_hook(void)
{
	/* Async-signal-safe; the pipe is empty, so this cannot block. */
	if (write(pfd[1], "x", 1) != 1)
		_exit(2);
}

int main(void)
{
	struct stat rst, wst;
	struct sigaction sa;
	struct pollfd p;
	char buf[16];
	int fl;
	ssize_t n;

	test_init();
	test_on_stop(stop_hook);
	/* Let the kernel restart the read() after the handler. */
	if (sigaction(SIGTERM, NULL, &sa))
		fail("sigaction: %s", test_strerror(errno));
	sa.sa_flags |= SA_RESTART;
	if (sigaction(SIGTERM, &sa, NULL))
		fail("sigaction: %s", test_strerror(errno));

	if (pipe2(pfd, 0))
		fail("pipe2: %s", test_strerror(errno));

	test_ready();

	do
		n = read(pfd[0], buf, sizeof(buf));
	while (n < 0 && errno == EINTR);	/* EINTR: the byte is waiting */

	if (n < 0)
		fail("read from pipe fd %d: %s", pfd[0], test_strerror(errno));
	if (n == 0)
		fail("read from pipe fd %d returned EOF, expected the byte \"x\" "
		     "(write end lost?)", pfd[0]);
	if (!test_stopped())
		fail("read returned %zd bytes before SIGTERM: the pipe was not "
		     "empty (first byte 0x%02x)", n, (unsigned char)buf[0]);
	if (n != 1 || buf[0] != 'x')
		fail("read %zd bytes starting with 0x%02x, expected the 1 byte \"x\" "
		     "written by the SIGTERM handler", n, (unsigned char)buf[0]);

	/* Both fds: still one pipe, same numbers, right access modes. */
	if (fstat(pfd[0], &rst) || fstat(pfd[1], &wst))
		fail("fstat on pipe fds %d/%d: %s", pfd[0], pfd[1], test_strerror(errno));
	if (!S_ISFIFO(rst.st_mode) || !S_ISFIFO(wst.st_mode))
		fail("fds %d/%d have modes %#o/%#o, expected both S_ISFIFO",
		     pfd[0], pfd[1], rst.st_mode, wst.st_mode);
	if (rst.st_ino != wst.st_ino || rst.st_dev != wst.st_dev)
		fail("fds %d and %d are different pipes (inodes %lu and %lu)",
		     pfd[0], pfd[1], (unsigned long)rst.st_ino,
		     (unsigned long)wst.st_ino);
	fl = fcntl(pfd[0], F_GETFL);
	if ((fl & O_ACCMODE) != O_RDONLY || (fl & O_NONBLOCK))
		fail("read end fd %d: F_GETFL %#o, expected O_RDONLY, blocking",
		     pfd[0], fl);
	fl = fcntl(pfd[1], F_GETFL);
	if ((fl & O_ACCMODE) != O_WRONLY || (fl & O_NONBLOCK))
		fail("write end fd %d: F_GETFL %#o, expected O_WRONLY, blocking",
		     pfd[1], fl);

	if (ioctl(pfd[0], FIONREAD, &fl) || fl != 0)
		fail("pipe should be empty after reading \"x\", FIONREAD says %d", fl);
	if (write(pfd[1], "y", 1) != 1)
		fail("write to pipe fd %d: %s", pfd[1], test_strerror(errno));
	p.fd = pfd[0];
	p.events = POLLIN;
	if (poll(&p, 1, 5000) != 1)
		fail("byte written to fd %d did not arrive at fd %d within 5 s",
		     pfd[1], pfd[0]);
	if (read(pfd[0], buf, sizeof(buf)) != 1 || buf[0] != 'y')
		fail("read from fd %d did not return the byte \"y\" just written",
		     pfd[0]);
	pass();
}
