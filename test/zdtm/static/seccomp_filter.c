/*
 * seccomp_filter - a process under a seccomp filter (with no_new_privs)
 * keeps it across a checkpoint.
 *
 * Installs a filter that allows every system call but returns EPERM for
 * getppid; after SIGTERM getppid must still fail with EPERM.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

int main(void)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };

	test_init();
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		fail("install seccomp filter: %s", strerror(errno));
	test_ready();
	test_wait_stop();
	if (syscall(SYS_getppid) != -1 || errno != EPERM)
		fail("getppid is allowed: the seccomp filter is gone");
	pass();
}
