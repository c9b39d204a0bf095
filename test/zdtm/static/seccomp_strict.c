/*
 * seccomp_strict - a child in seccomp strict mode survives a checkpoint,
 * still in strict mode (CRIU's seccomp_strict).
 *
 * The child fills a buffer with a pattern, enters strict mode, and from
 * then on only reads requests from a pipe and writes answers to another
 * (read, write and exit are all strict mode allows). After SIGTERM the
 * parent checks the child's Seccomp field (1), asks it for the checksum
 * of its buffer (its memory and its strict mode both survived: the
 * answer comes back), then asks it to call getppid, which strict mode
 * must punish with SIGKILL.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define BUF_SIZE (256 << 10)
#define SEED 0x5ecc0

static unsigned char buf[BUF_SIZE];

/* The child's loop: nothing but read, write and exit. */
static void serve(int req, int rep)
{
	char c;

	for (;;) {
		if (syscall(SYS_read, req, &c, 1) != 1)
			syscall(SYS_exit, 2);
		switch (c) {
		case 'c': {
			uint64_t sum = checksum(buf, sizeof(buf));

			if (syscall(SYS_write, rep, &sum, sizeof(sum)) != sizeof(sum))
				syscall(SYS_exit, 3);
			break;
		}
		case 'k':
			syscall(SYS_getppid); /* killed here */
			syscall(SYS_exit, 4);
		default:
			syscall(SYS_exit, 5);
		}
	}
}

static long seccomp_mode(pid_t pid)
{
	char path[64], line[256];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	if (!(f = fopen(path, "r")))
		fail("open %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "Seccomp:", 8))
			v = strtol(line + 8, NULL, 10);
	fclose(f);
	return v;
}

int main(void)
{
	int req[2], rep[2], status;
	uint64_t sum, want;
	pid_t pid;

	test_init();
	if (pipe(req) || pipe(rep))
		fail("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (pid == 0) {
		fill_pattern(buf, sizeof(buf), SEED);
		if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0))
			syscall(SYS_exit, 1);
		serve(req[0], rep[1]);
	}
	/* Wait until the child is in strict mode. */
	for (int i = 0; seccomp_mode(pid) != SECCOMP_MODE_STRICT; i++) {
		if (i == 5000)
			fail("child %d never entered strict mode", pid);
		usleep(1000);
	}
	test_ready();
	test_wait_stop();

	if (seccomp_mode(pid) != SECCOMP_MODE_STRICT)
		fail("child %d: Seccomp %ld, want %d", pid, seccomp_mode(pid), SECCOMP_MODE_STRICT);
	fill_pattern(buf, sizeof(buf), SEED);
	want = checksum(buf, sizeof(buf));
	if (write(req[1], "c", 1) != 1 || read(rep[0], &sum, sizeof(sum)) != sizeof(sum))
		fail("ask the child for its checksum: %s", strerror(errno));
	if (sum != want)
		fail("child's checksum %#llx, want %#llx", (unsigned long long)sum, (unsigned long long)want);
	if (write(req[1], "k", 1) != 1)
		fail("write: %s", strerror(errno));
	if (waitpid(pid, &status, 0) != pid)
		fail("waitpid: %s", strerror(errno));
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
		fail("child called getppid in strict mode and ended with status %#x, not SIGKILL", status);
	pass();
}
