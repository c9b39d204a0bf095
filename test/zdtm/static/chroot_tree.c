/*
 * chroot_tree - a process and its child keep a root of their own (CRIU's
 * chroot and chroot-file).
 *
 * C makes ./jail with a file and a directory in it, enters ./jail/sub,
 * changes its root to ./jail and opens /file there; then it forks G,
 * which inherits that root and opens /sub/file2. The test's own process
 * keeps its root. After SIGTERM each of C and G checks, and reports
 * through a pipe: / is the jail (/file, found by its path, is the file it
 * opened before), its working directory is /sub, and it can still create
 * a file in its root by an absolute path.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define MSG "in the jail"

/* same tells whether fd and path are one file. */
static int same(int fd, const char *path)
{
	struct stat a, b;

	return !fstat(fd, &a) && !stat(path, &b) && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* check is what C and G verify after restore: 0, or what is wrong. */
static const char *check(int fd, const char *path, const char *made)
{
	static char cwd[256];
	char buf[sizeof(MSG)];
	int nfd;

	if (!same(fd, path))
		return "the file opened before is not the one at its path in the root";
	if (pread(fd, buf, sizeof(buf), 0) != sizeof(buf) || memcmp(buf, MSG, sizeof(buf)))
		return "the file's contents differ";
	if (!getcwd(cwd, sizeof(cwd)) || strcmp(cwd, "/sub"))
		return "the working directory is not /sub in the root";
	if (access("/jail", F_OK) == 0)
		return "the root is the test's directory, not the jail";
	nfd = open(made, O_CREAT | O_EXCL | O_WRONLY, 0600);
	if (nfd < 0)
		return "cannot create a file in the root by an absolute path";
	close(nfd);
	return NULL;
}

/* task waits for the go byte on in, checks and writes its verdict. */
static void task(int in, int out, int fd, const char *path, const char *made)
{
	char go, verdict[200];
	const char *bad;

	if (read(in, &go, 1) != 1)
		_exit(2);
	bad = check(fd, path, made);
	snprintf(verdict, sizeof(verdict), "%s", bad ? bad : "ok");
	_exit(write(out, verdict, strlen(verdict) + 1) < 0);
}

static void make_jail(void)
{
	int fd;

	if (mkdir("jail", 0700) || mkdir("jail/sub", 0700))
		fail("mkdir: %s", strerror(errno));
	fd = open("jail/file", O_CREAT | O_WRONLY, 0600);
	if (fd < 0 || write(fd, MSG, sizeof(MSG)) != sizeof(MSG))
		fail("jail/file: %s", strerror(errno));
	close(fd);
	fd = open("jail/sub/file2", O_CREAT | O_WRONLY, 0600);
	if (fd < 0 || write(fd, MSG, sizeof(MSG)) != sizeof(MSG))
		fail("jail/sub/file2: %s", strerror(errno));
	close(fd);
}

/* child is C: it enters the jail, forks G and waits for the go. */
static void child(int go[2], int res[2], int ready)
{
	int fd, gfd;
	pid_t g;

	if (chdir("jail/sub") || chroot(".."))
		_exit(3);
	fd = open("/file", O_RDONLY);
	gfd = open("/sub/file2", O_RDONLY);
	if (fd < 0 || gfd < 0)
		_exit(4);
	g = fork();
	if (g < 0)
		_exit(5);
	if (g == 0) {
		close(fd);
		task(go[0], res[1], gfd, "/sub/file2", "/made-by-g");
	}
	close(gfd);
	if (write(ready, "r", 1) != 1)
		_exit(6);
	close(ready);
	task(go[0], res[1], fd, "/file", "/made-by-c");
}

int main(void)
{
	int go[2], res[2], rdy[2], i;
	char buf[512], r;
	ssize_t n, got = 0;
	pid_t c;

	test_init();
	make_jail();
	if (pipe(go) || pipe(res) || pipe(rdy))
		fail("pipe: %s", strerror(errno));
	c = fork();
	if (c < 0)
		fail("fork: %s", strerror(errno));
	if (c == 0) {
		close(rdy[0]);
		child(go, res, rdy[1]);
	}
	close(rdy[1]);
	if (read(rdy[0], &r, 1) != 1)
		fail("C did not get ready");
	test_ready();
	test_wait_stop();
	if (write(go[1], "gg", 2) != 2)
		fail("go: %s", strerror(errno));
	close(res[1]);
	while (got < (ssize_t)sizeof(buf) && (n = read(res[0], buf + got, sizeof(buf) - got)) > 0)
		got += n;
	for (i = 0; i < 2; i++) {
		int st;
		pid_t w = wait(&st);

		if (w < 0 && errno != ECHILD)
			fail("wait: %s", strerror(errno));
	}
	/* Two verdicts, each NUL-terminated. */
	if (got < 2 || buf[got - 1])
		fail("no verdicts from C and G (%zd bytes)", got);
	for (char *p = buf; p < buf + got; p += strlen(p) + 1)
		if (strcmp(p, "ok"))
			fail("%s", p);
	if (strlen(buf) + 1 == (size_t)got)
		fail("one verdict only");
	if (access("jail/made-by-c", F_OK) || access("jail/made-by-g", F_OK))
		fail("files made in the jail are not in ./jail");
	pass();
}
