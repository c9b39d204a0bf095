/*
 * symlink_open - symbolic links opened themselves, O_PATH|O_NOFOLLOW.
 *
 * "symlink_open.lnk" points to "no/such/target" (dangling: only the link
 * itself can be opened) and stays.  "symlink_open.gone" points to
 * "../elsewhere" and is unlinked after it is opened (a ghost symlink).
 *
 * After SIGTERM: each fd is a symbolic link (fstat) open O_PATH, whose
 * target (readlinkat(fd, "")) is the one it had; the linked one is still the
 * link at its path, the unlinked one has nlink 0 and its path stays gone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define LNK "symlink_open.lnk"
#define LNK_TO "no/such/target"
#define GONE "symlink_open.gone"
#define GONE_TO "../elsewhere"

static void check_link(int fd, const char *to, nlink_t nlink, const char *what)
{
	char buf[PATH_MAX];
	struct stat st;

	if (fstat(fd, &st))
		fail("fstat %s: %s", what, test_strerror(errno));
	if (!S_ISLNK(st.st_mode) || st.st_nlink != nlink)
		fail("%s: mode %#o nlink %lu, want a symbolic link with nlink %lu", what, st.st_mode,
		     (unsigned long)st.st_nlink, (unsigned long)nlink);
	if (!(fcntl(fd, F_GETFL) & O_PATH))
		fail("%s: flags %#o, not O_PATH", what, fcntl(fd, F_GETFL));
	ssize_t n = readlinkat(fd, "", buf, sizeof(buf) - 1);
	if (n < 0)
		fail("readlinkat %s: %s", what, test_strerror(errno));
	buf[n] = 0;
	if (strcmp(buf, to))
		fail("%s points to \"%s\", want \"%s\"", what, buf, to);
}

int main(void)
{
	struct stat a, b;

	test_init();
	if (symlink(LNK_TO, LNK) || symlink(GONE_TO, GONE))
		fail("symlink: %s", test_strerror(errno));
	int lnk = open(LNK, O_PATH | O_NOFOLLOW);
	int gone = open(GONE, O_PATH | O_NOFOLLOW);
	if (lnk < 0 || gone < 0)
		fail("open: %s", test_strerror(errno));
	if (unlink(GONE))
		fail("unlink: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	check_link(lnk, LNK_TO, 1, "the linked symlink");
	check_link(gone, GONE_TO, 0, "the unlinked symlink");
	if (fstat(lnk, &a) || lstat(LNK, &b) || a.st_ino != b.st_ino || a.st_dev != b.st_dev)
		fail("the linked symlink's fd is not the link at %s", LNK);
	if (lstat(GONE, &b) == 0 || errno != ENOENT)
		fail("%s exists again", GONE);
	pass();
}
