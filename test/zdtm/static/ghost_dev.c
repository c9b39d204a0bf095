/*
 * ghost_dev - unlinked device nodes (CRIU's deleted_dev).
 *
 * "ghost_dev.null" (char 1:3, mode 0620) is opened O_RDWR and
 * "ghost_dev.zero" (char 1:5, mode 0600) O_RDONLY; both are unlinked.
 *
 * After SIGTERM: each fd is a character device with its rdev and mode and
 * nlink 0, with its access mode; the null device takes a write, the zero
 * device reads zeros; the paths stay gone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "zdtm.h"

#define NUL "ghost_dev.null"
#define ZERO "ghost_dev.zero"

static void check(int fd, dev_t rdev, mode_t mode, int acc, const char *what)
{
	struct stat st;

	if (fstat(fd, &st))
		fail("fstat %s: %s", what, test_strerror(errno));
	if (!S_ISCHR(st.st_mode) || st.st_rdev != rdev || (st.st_mode & 07777) != mode || st.st_nlink != 0)
		fail("%s: mode %#o rdev %#lx nlink %lu, want a character device %#o of %#lx, nlink 0", what, st.st_mode,
		     (unsigned long)st.st_rdev, (unsigned long)st.st_nlink, mode, (unsigned long)rdev);
	if ((fcntl(fd, F_GETFL) & O_ACCMODE) != acc)
		fail("%s: flags %#o, want access mode %#o", what, fcntl(fd, F_GETFL), acc);
}

int main(void)
{
	char buf[64];

	test_init();
	if (mknod(NUL, S_IFCHR | 0620, makedev(1, 3)) || mknod(ZERO, S_IFCHR | 0600, makedev(1, 5)) ||
	    chmod(NUL, 0620))
		fail("mknod: %s", test_strerror(errno));
	int nul = open(NUL, O_RDWR);
	int zero = open(ZERO, O_RDONLY);
	if (nul < 0 || zero < 0)
		fail("open: %s", test_strerror(errno));
	if (unlink(NUL) || unlink(ZERO))
		fail("unlink: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	check(nul, makedev(1, 3), 0620, O_RDWR, "the null device");
	check(zero, makedev(1, 5), 0600, O_RDONLY, "the zero device");
	if (write(nul, "abc", 3) != 3)
		fail("write the null device: %s", test_strerror(errno));
	for (int i = 0; i < (int)sizeof(buf); i++)
		buf[i] = 1;
	if (read(zero, buf, sizeof(buf)) != sizeof(buf))
		fail("read the zero device: %s", test_strerror(errno));
	expect_zero(buf, sizeof(buf), "the zero device");
	if (access(NUL, F_OK) == 0 || access(ZERO, F_OK) == 0)
		fail("a device node exists again");
	pass();
}
