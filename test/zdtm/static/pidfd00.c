/*
 * pidfd00 - pidfds of the process itself, of its children (live, a zombie,
 * one that exits after restore), of one of its threads (PIDFD_THREAD) and
 * of two dead processes.
 *
 * Setup: the parent forks A, whose SIGUSR1 handler writes getpid() into a
 * pipe, and B, which exits with 7 once a byte arrives on another pipe; Z
 * exits with 5 and stays a zombie; D1 and D2 are killed and reaped. A
 * pthread T records gettid() in a SIGUSR2 handler. The parent opens:
 * a pidfd of itself (PIDFD_NONBLOCK), of A and a dup of it, of B, of Z,
 * of T with PIDFD_THREAD, two of D1 and one of D2.
 *
 * After SIGTERM: each pidfd's fdinfo has the flags (O_NONBLOCK, O_EXCL
 * for PIDFD_THREAD, O_CLOEXEC) and the Pid it had; the dup shares its
 * open file with A's pidfd (kcmp); pidfd_send_signal through A's pidfd
 * runs A's handler in A, through T's with PIDFD_SIGNAL_THREAD runs it in
 * T, through our own pidfd signal 0 works; the two pidfds of D1 show one
 * pidfs inode, D2's another, both dead (Pid -1, ESRCH, readable); Z's
 * pidfd is readable and waitid(P_PIDFD) reports exit 5; B's pidfd is not
 * readable until B is told to exit, then poll wakes within 5 s and
 * waitid(P_PIDFD) reports exit 7.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#ifndef PIDFD_SIGNAL_THREAD
#define PIDFD_SIGNAL_THREAD 1
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#define KCMP_FILE 0

static int xpidfd_open(pid_t pid, unsigned flags)
{
	int fd = syscall(SYS_pidfd_open, pid, flags);
	if (fd < 0)
		fail("pidfd_open(%d, %#o): %s", pid, flags, test_strerror(errno));
	return fd;
}

static int send_signal(int pidfd, int sig, unsigned flags)
{
	return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, flags);
}

static int usr1_pipe;

static void usr1(int sig)
{
	pid_t me = getpid();
	(void)sig;
	if (write(usr1_pipe, &me, sizeof(me)) != sizeof(me))
		_exit(3);
}

static volatile pid_t usr2_tid;

static void usr2(int sig)
{
	(void)sig;
	usr2_tid = syscall(SYS_gettid);
}

static pid_t thread_tid;

static void *thread_main(void *arg)
{
	(void)arg;
	__atomic_store_n(&thread_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
	for (;;)
		pause();
	return NULL;
}

/* fdinfo of a pidfd: its flags and its Pid line. */
static void fdinfo(int fd, unsigned *flags, int *pid)
{
	char path[64], line[256];
	int got = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "r");
	if (!f)
		fail("open %s: %s", path, test_strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "flags: %o", flags) == 1)
			got |= 1;
		if (sscanf(line, "Pid: %d", pid) == 1)
			got |= 2;
	}
	fclose(f);
	if (got != 3)
		fail("%s: no flags or Pid line", path);
}

struct pfd {
	const char *name;
	int fd;
	unsigned flags;
	int pid;
};

static void remember(struct pfd *p, const char *name, int fd)
{
	p->name = name;
	p->fd = fd;
	fdinfo(fd, &p->flags, &p->pid);
}

static void check_fdinfo(struct pfd *p)
{
	unsigned flags;
	int pid;

	fdinfo(p->fd, &flags, &pid);
	if (flags != p->flags || pid != p->pid)
		fail("pidfd of %s (fd %d): flags %#o Pid %d, were %#o %d", p->name, p->fd,
		     flags, pid, p->flags, p->pid);
}

static ino_t ino(int fd)
{
	struct stat st;
	if (fstat(fd, &st))
		fail("fstat %d: %s", fd, test_strerror(errno));
	return st.st_ino;
}

static int readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int n = poll(&p, 1, timeout_ms);
	if (n < 0)
		fail("poll pidfd %d: %s", fd, test_strerror(errno));
	return n == 1 && (p.revents & POLLIN);
}

static pid_t dead_child(void)
{
	pid_t pid = fork();
	if (pid < 0)
		fail("fork: %s", test_strerror(errno));
	if (pid == 0)
		for (;;)
			pause();
	return pid;
}

static void expect_exit(int pidfd, const char *name, int code)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, pidfd, &si, WEXITED))
		fail("waitid(P_PIDFD) on %s: %s", name, test_strerror(errno));
	if (si.si_code != CLD_EXITED || si.si_status != code)
		fail("%s ended with code %d status %d, want exit %d", name, si.si_code, si.si_status, code);
}

int main(void)
{
	int up[2], bp[2];
	struct pfd self, a, adup, b, z, t, d1a, d1b, d2;

	test_init();
	if (pipe(up) || pipe(bp))
		fail("pipe: %s", test_strerror(errno));
	usr1_pipe = up[1];
	struct sigaction sa = { .sa_handler = usr1 };
	if (sigaction(SIGUSR1, &sa, NULL))
		fail("sigaction: %s", test_strerror(errno));
	sa.sa_handler = usr2;
	if (sigaction(SIGUSR2, &sa, NULL))
		fail("sigaction: %s", test_strerror(errno));

	pid_t apid = fork();
	if (apid < 0)
		fail("fork: %s", test_strerror(errno));
	if (apid == 0)
		for (;;)
			pause();
	pid_t bpid = fork();
	if (bpid < 0)
		fail("fork: %s", test_strerror(errno));
	if (bpid == 0) {
		char c;
		close(bp[1]);
		_exit(read(bp[0], &c, 1) == 1 ? 7 : 1);
	}
	close(bp[0]);
	pid_t zpid = fork();
	if (zpid < 0)
		fail("fork: %s", test_strerror(errno));
	if (zpid == 0)
		_exit(5);
	/* T takes SIGUSR2 only: SIGTERM must wake the main thread. */
	sigset_t only2, old;
	sigfillset(&only2);
	sigdelset(&only2, SIGUSR2);
	pthread_t th;
	if (pthread_sigmask(SIG_SETMASK, &only2, &old) || pthread_create(&th, NULL, thread_main, NULL) ||
	    pthread_sigmask(SIG_SETMASK, &old, NULL))
		fail("pthread_create");
	while (!__atomic_load_n(&thread_tid, __ATOMIC_SEQ_CST))
		usleep(1000);

	remember(&self, "self", xpidfd_open(getpid(), O_NONBLOCK));
	remember(&a, "A", xpidfd_open(apid, 0));
	int dupfd = fcntl(a.fd, F_DUPFD_CLOEXEC, 20);
	if (dupfd < 0)
		fail("dup: %s", test_strerror(errno));
	remember(&adup, "A (dup)", dupfd);
	remember(&b, "B", xpidfd_open(bpid, 0));
	remember(&z, "Z", xpidfd_open(zpid, 0));
	remember(&t, "thread T", xpidfd_open(thread_tid, PIDFD_THREAD | O_NONBLOCK));

	pid_t dpid = dead_child();
	int d1fd = xpidfd_open(dpid, 0), d1fd2 = xpidfd_open(dpid, O_NONBLOCK);
	pid_t d2pid = dead_child();
	int d2fd = xpidfd_open(d2pid, 0);
	kill(dpid, SIGKILL);
	kill(d2pid, SIGKILL);
	if (waitpid(dpid, NULL, 0) != dpid || waitpid(d2pid, NULL, 0) != d2pid)
		fail("reap D1, D2: %s", test_strerror(errno));
	/* Z stays a zombie: wait for its exit without reaping it. */
	siginfo_t si;
	if (waitid(P_PID, zpid, &si, WEXITED | WNOWAIT))
		fail("waitid Z: %s", test_strerror(errno));
	remember(&d1a, "D1", d1fd);
	remember(&d1b, "D1 (second pidfd)", d1fd2);
	remember(&d2, "D2", d2fd);
	if (d1a.pid != -1 || d2.pid != -1)
		fail("dead pidfds show Pid %d and %d before the dump", d1a.pid, d2.pid);

	test_ready();
	test_wait_stop();

	struct pfd *all[] = { &self, &a, &adup, &b, &z, &t, &d1a, &d1b, &d2 };
	for (unsigned i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		check_fdinfo(all[i]);
	if (syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a.fd, adup.fd) != 0)
		fail("A's pidfd and its dup are no longer one open file");

	if (send_signal(self.fd, 0, 0))
		fail("signal 0 through our own pidfd: %s", test_strerror(errno));
	if (send_signal(a.fd, SIGUSR1, 0))
		fail("SIGUSR1 through A's pidfd: %s", test_strerror(errno));
	pid_t got;
	if (read(up[0], &got, sizeof(got)) != sizeof(got) || got != apid)
		fail("A's handler ran in pid %d, want %d", got, apid);
	if (send_signal(t.fd, SIGUSR2, PIDFD_SIGNAL_THREAD))
		fail("SIGUSR2 through T's pidfd: %s", test_strerror(errno));
	for (int i = 0; i < 5000 && !usr2_tid; i++)
		usleep(1000);
	if (usr2_tid != thread_tid)
		fail("SIGUSR2 through T's pidfd ran in thread %d, want %d", usr2_tid, thread_tid);

	if (ino(d1a.fd) != ino(d1b.fd))
		fail("the two pidfds of D1 have pidfs inodes %lu and %lu", (unsigned long)ino(d1a.fd),
		     (unsigned long)ino(d1b.fd));
	if (ino(d1a.fd) == ino(d2.fd) || ino(d1a.fd) == ino(a.fd))
		fail("D1's pidfd shares its pidfs inode with D2's or A's");
	errno = 0;
	if (send_signal(d1a.fd, SIGKILL, 0) != -1 || errno != ESRCH)
		fail("SIGKILL through D1's pidfd: %s, want ESRCH", test_strerror(errno));
	if (!readable(d2.fd, 0) || !readable(d1b.fd, 0))
		fail("the pidfds of dead processes are not readable");

	if (!readable(z.fd, 0))
		fail("the zombie's pidfd is not readable");
	expect_exit(z.fd, "Z", 5);

	if (readable(b.fd, 0))
		fail("B's pidfd is readable while B runs");
	if (write(bp[1], "x", 1) != 1)
		fail("wake B: %s", test_strerror(errno));
	if (!readable(b.fd, 5000))
		fail("poll on B's pidfd did not wake when B exited");
	expect_exit(b.fd, "B", 7);

	kill(apid, SIGKILL);
	waitpid(apid, NULL, 0);
	pass();
}
