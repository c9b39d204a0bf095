/*
 * proc_child_open - a parent holding files under /proc/CHILD of its own
 * child (CRIU's child_opened_proc): restore forks the child only after the
 * parent's files are made, so these can be opened only once it exists.
 *
 * The parent opens /proc/CHILD/stat (fd s, and a dup of it, d, after reading
 * 5 bytes) and the directory /proc/CHILD (O_DIRECTORY).  The child waits on
 * a pipe.
 *
 * After SIGTERM: s and d are one open file at offset 5; the stat line read
 * from 0 starts with "CHILD (proc_child_open)"; "comm" read through the
 * directory fd says proc_child_open; the child, woken, exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

int main(void)
{
	char path[64], want[64], buf[256];
	int p[2], status;

	test_init();
	if (pipe(p))
		fail("pipe: %s", test_strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		fail("fork: %s", test_strerror(errno));
	if (pid == 0) {
		char c;
		close(p[1]);
		_exit(read(p[0], &c, 1) == 1 ? 0 : 1);
	}
	close(p[0]);
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	int s = open(path, O_RDONLY);
	snprintf(path, sizeof(path), "/proc/%d", pid);
	int dir = open(path, O_RDONLY | O_DIRECTORY);
	if (s < 0 || dir < 0 || read(s, buf, 5) != 5)
		fail("open, read /proc/%d: %s", pid, test_strerror(errno));
	int d = dup(s);
	if (d < 0)
		fail("dup: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	if (lseek(s, 0, SEEK_CUR) != 5 || lseek(d, 7, SEEK_SET) != 7 || lseek(s, 0, SEEK_CUR) != 7)
		fail("the stat fds are not one open file at offset 5");
	snprintf(want, sizeof(want), "%d (proc_child_open)", pid);
	ssize_t n = pread(s, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	if (strncmp(buf, want, strlen(want)))
		fail("/proc/%d/stat reads \"%s\", want it to start with \"%s\"", pid, buf, want);
	int c = openat(dir, "comm", O_RDONLY);
	n = c < 0 ? -1 : read(c, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	if (strcmp(buf, "proc_child_open\n"))
		fail("comm through the /proc/%d fd: \"%s\" (%s)", pid, buf, c < 0 ? test_strerror(errno) : "read");
	if (write(p[1], "x", 1) != 1 || waitpid(pid, &status, 0) != pid)
		fail("wake, wait the child: %s", test_strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("the child ended with status %#x", status);
	pass();
}
