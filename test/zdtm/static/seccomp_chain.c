/*
 * seccomp_chain - a chain of two seccomp filters shared by a process, its
 * threads and a child (as a container under Podman's default profile),
 * survives a checkpoint: the same filters, in the same order, shared.
 *
 * Filter A returns ENOTTY for getppid. Filter B, installed after it,
 * returns EDOM for getppid (the newest filter's errno wins, so the order
 * shows) and kills the process on prctl(PR_SET_PDEATHSIG), which a restore
 * makes each thread call after its filters are in place: they must be
 * suspended while amber restores the task.
 *
 * The main thread installs both as root (no no_new_privs), then:
 *   - forks a child, which drops CAP_SYS_ADMIN (without it and without
 *     no_new_privs a filter can only be installed while the restore has
 *     not yet set its credentials) and starts a thread: the child's two
 *     threads have the same chain, which a dump records on its main
 *     thread only (as CRIU does), flagged TSYNC;
 *   - starts thread T1, which keeps the chain as is;
 *   - starts thread T2, which adds filter C (getsid: EXDEV).
 * After SIGTERM each task checks getppid (EDOM), its Seccomp and
 * Seccomp_filters in /proc/thread-self/status (2, 2 or 3 for T2), and that
 * prctl(PR_SET_PDEATHSIG) still kills (a grandchild tries it and must die
 * of SIGSYS). Then T2 installs filter D (getpgid: ENODATA) with
 * SECCOMP_FILTER_FLAG_TSYNC: the kernel gives it to every thread only if
 * each one's chain is part of T2's, the same filters, not copies; after it
 * the main thread and T1 count 4 filters and get ENODATA from getpgid and
 * EXDEV from getsid. Likewise the child's thread installs a filter with
 * TSYNC (after setting no_new_privs), which must reach the child's main
 * thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define LOAD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define ALLOW BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
#define ERRNO(e) BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (e))

static int install(struct sock_filter *code, unsigned short len, unsigned int flags)
{
	struct sock_fprog prog = { len, code };

	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

/* A: getppid -> ENOTTY. */
static void install_a(void)
{
	struct sock_filter code[] = {
		LOAD_NR,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
		ERRNO(ENOTTY),
		ALLOW,
	};

	if (install(code, sizeof(code) / sizeof(code[0]), 0))
		fail("install filter A: %s", strerror(errno));
}

/* B: getppid -> EDOM, prctl(PR_SET_PDEATHSIG, ...) -> kill the process. */
static void install_b(void)
{
	struct sock_filter code[] = {
		LOAD_NR,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
		ERRNO(EDOM),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_prctl, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PR_SET_PDEATHSIG, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		ALLOW,
	};

	if (install(code, sizeof(code) / sizeof(code[0]), 0))
		fail("install filter B: %s", strerror(errno));
}

/* One system call returning errno e: C is getsid -> EXDEV, D getpgid -> ENODATA. */
static int install_errno(long nr, int e, unsigned int flags)
{
	struct sock_filter code[] = {
		LOAD_NR,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
		ERRNO(e),
		ALLOW,
	};

	return install(code, sizeof(code) / sizeof(code[0]), flags);
}

/* The value of a field of /proc/thread-self/status in base, -1 if absent. */
static long status_field(const char *name, int base)
{
	char line[256];
	size_t n = strlen(name);
	long v = -1;
	FILE *f = fopen("/proc/thread-self/status", "r");

	if (!f)
		fail("open /proc/thread-self/status: %s", strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, name, n) && line[n] == ':')
			v = strtol(line + n + 1, NULL, base);
	fclose(f);
	return v;
}

static void expect_errno(const char *who, const char *call, long nr, int want)
{
	errno = 0;
	if (syscall(nr) != -1 || errno != want)
		fail("%s: %s gave errno %d (%s), want %d (%s)", who, call, errno, strerror(errno), want,
		     strerror(want));
}

static void expect_filters(const char *who, long want)
{
	long mode = status_field("Seccomp", 10), n = status_field("Seccomp_filters", 10);

	if (mode != SECCOMP_MODE_FILTER || n != want)
		fail("%s: Seccomp %ld, Seccomp_filters %ld; want %d and %ld", who, mode, n,
		     SECCOMP_MODE_FILTER, want);
}

/* A grandchild calling prctl(PR_SET_PDEATHSIG) must die of SIGSYS. */
static void expect_kill(const char *who)
{
	struct rlimit no_core = { 0, 0 };
	int status;
	pid_t pid = fork();

	if (pid < 0)
		fail("%s: fork: %s", who, strerror(errno));
	if (pid == 0) {
		setrlimit(RLIMIT_CORE, &no_core);
		syscall(SYS_prctl, PR_SET_PDEATHSIG, 0, 0, 0, 0);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid)
		fail("%s: waitpid: %s", who, strerror(errno));
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSYS)
		fail("%s: prctl(PR_SET_PDEATHSIG) did not kill (status %#x)", who, status);
}

/* The checks every task makes after restore, with its filter count. */
static void check_chain(const char *who, long filters)
{
	expect_errno(who, "getppid", SYS_getppid, EDOM);
	expect_filters(who, filters);
	expect_kill(who);
}

static void wait_byte(int fd, const char *who)
{
	char c;

	if (read(fd, &c, 1) != 1)
		fail("%s: read: %s", who, strerror(errno));
}

static void send_byte(int fd)
{
	if (write(fd, "x", 1) != 1)
		fail("write: %s", strerror(errno));
}

static int go1[2], go2[2], done[2];

static void *t1_main(void *arg)
{
	(void)arg;
	wait_byte(go1[0], "T1");
	check_chain("T1", 2);
	send_byte(done[1]);
	wait_byte(go1[0], "T1");
	expect_filters("T1 after TSYNC", 4);
	expect_errno("T1 after TSYNC", "getpgid", SYS_getpgid, ENODATA);
	expect_errno("T1 after TSYNC", "getsid", SYS_getsid, EXDEV);
	return NULL;
}

static void *t2_main(void *arg)
{
	long ret;

	(void)arg;
	if (install_errno(SYS_getsid, EXDEV, 0))
		fail("T2: install filter C: %s", strerror(errno));
	send_byte(done[1]);
	wait_byte(go2[0], "T2");
	check_chain("T2", 3);
	expect_errno("T2", "getsid", SYS_getsid, EXDEV);
	ret = install_errno(SYS_getpgid, ENODATA, SECCOMP_FILTER_FLAG_TSYNC);
	if (ret)
		fail("T2: install filter D with TSYNC: %ld (%s): thread %ld does not share T2's filters", ret,
		     ret < 0 ? strerror(errno) : "a thread", ret);
	send_byte(done[1]);
	return NULL;
}

static int child_thread_go[2];

/*
 * The child's thread has the child's chain: the dump records it on the
 * child's main thread only, and the restore must give it to both, shared.
 */
static void *child_thread(void *arg)
{
	long ret;

	(void)arg;
	wait_byte(child_thread_go[0], "child's thread");
	check_chain("child's thread", 2);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		fail("child's thread: PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	ret = install_errno(SYS_getpgid, ENODATA, SECCOMP_FILTER_FLAG_TSYNC);
	if (ret)
		fail("child's thread: install a filter with TSYNC: %ld (%s): the child's threads do not share their filters",
		     ret, ret < 0 ? strerror(errno) : "a thread");
	return NULL;
}

static pid_t start_child(int fd)
{
	pthread_t thread;
	pid_t pid = fork();

	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (pid)
		return pid;
	{
		struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
		struct __user_cap_data_struct data[2];

		if (syscall(SYS_capget, &hdr, data))
			fail("child: capget: %s", strerror(errno));
		data[0].effective &= ~(1u << CAP_SYS_ADMIN);
		data[0].permitted &= ~(1u << CAP_SYS_ADMIN);
		if (syscall(SYS_capset, &hdr, data))
			fail("child: capset: %s", strerror(errno));
	}
	if (pipe(child_thread_go) || pthread_create(&thread, NULL, child_thread, NULL))
		fail("child: start a thread: %s", strerror(errno));
	send_byte(done[1]);
	wait_byte(fd, "child");
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 0 || status_field("CapEff", 16) & (1 << CAP_SYS_ADMIN))
		fail("child: has no_new_privs or CAP_SYS_ADMIN");
	check_chain("child", 2);
	send_byte(child_thread_go[1]);
	if (pthread_join(thread, NULL))
		fail("child: pthread_join failed");
	expect_filters("child after its thread's TSYNC", 3);
	expect_errno("child after its thread's TSYNC", "getpgid", SYS_getpgid, ENODATA);
	exit(0);
}

int main(void)
{
	pthread_t t1, t2;
	int child_go[2], status;
	sigset_t term;
	pid_t child;

	test_init();
	if (pipe(go1) || pipe(go2) || pipe(done) || pipe(child_go))
		fail("pipe: %s", strerror(errno));
	install_a();
	install_b();
	child = start_child(child_go[0]);
	/* SIGTERM is for the main thread: the threads start with it blocked. */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &term, NULL);
	if (pthread_create(&t1, NULL, t1_main, NULL) || pthread_create(&t2, NULL, t2_main, NULL))
		fail("pthread_create failed");
	pthread_sigmask(SIG_UNBLOCK, &term, NULL);
	/* The child has its thread, T2 its third filter. */
	wait_byte(done[0], "main");
	wait_byte(done[0], "main");
	test_ready();
	test_wait_stop();

	check_chain("main", 2);
	send_byte(child_go[1]);
	if (waitpid(child, &status, 0) != child)
		fail("waitpid child: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("child failed (status %#x)", status);
	send_byte(go1[1]);
	wait_byte(done[0], "main");
	send_byte(go2[1]);
	wait_byte(done[0], "main");
	expect_filters("main after TSYNC", 4);
	expect_errno("main after TSYNC", "getpgid", SYS_getpgid, ENODATA);
	expect_errno("main after TSYNC", "getsid", SYS_getsid, EXDEV);
	send_byte(go1[1]);
	if (pthread_join(t1, NULL) || pthread_join(t2, NULL))
		fail("pthread_join failed");
	pass();
}
