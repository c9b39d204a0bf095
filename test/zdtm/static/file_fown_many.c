/*
 * file_fown_many - the owners of hundreds of files survive a checkpoint.
 *
 * A dump reads the owners of a process's files in batches; this table
 * spans several. 200 pipes, an O_PATH descriptor of this program after
 * every fifth (fcntl of one fails: a batch must skip them), and every end
 * of a pipe given one of six owners by its number: none; the process
 * (F_OWNER_PID) with SIGUSR1; the process group of a child, its leader
 * (F_OWNER_PGRP) with SIGUSR2; the main thread (F_OWNER_TID) with
 * SIGRTMIN; a second thread (F_OWNER_TID), no signal, O_ASYNC; the child
 * (F_OWNER_PID) with SIGIO, O_ASYNC.  After SIGTERM F_GETOWN_EX, F_GETSIG
 * and F_GETFL must say the same of every descriptor.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define NPIPES	200
#define NFDS	(NPIPES * 2 + NPIPES / 5)

struct owned {
	int fd;
	int type, pid, sig, async;
};

static struct owned fds[NFDS];
static int nfds;
static pid_t thread_tid;

static void *sleeper(void *arg)
{
	sigset_t all;

	(void)arg;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	__atomic_store_n(&thread_tid, gettid(), __ATOMIC_SEQ_CST);
	for (;;)
		pause();
	return NULL;
}

/* owner gives fds[i] the owner its number picks. */
static void owner(struct owned *o, int i, pid_t child)
{
	switch (i % 6) {
	case 0:
		return;
	case 1:
		o->type = F_OWNER_PID, o->pid = getpid(), o->sig = SIGUSR1;
		break;
	case 2:
		o->type = F_OWNER_PGRP, o->pid = child, o->sig = SIGUSR2;
		break;
	case 3:
		o->type = F_OWNER_TID, o->pid = gettid(), o->sig = SIGRTMIN;
		break;
	case 4:
		o->type = F_OWNER_TID, o->pid = thread_tid, o->async = 1;
		break;
	case 5:
		o->type = F_OWNER_PID, o->pid = child, o->sig = SIGIO, o->async = 1;
		break;
	}
}

static void set(const struct owned *o)
{
	struct f_owner_ex ex = { .type = o->type, .pid = o->pid };

	if (o->sig && fcntl(o->fd, F_SETSIG, o->sig))
		fail("fd %d: F_SETSIG: %s", o->fd, strerror(errno));
	if (o->pid && fcntl(o->fd, F_SETOWN_EX, &ex))
		fail("fd %d: F_SETOWN_EX %d %d: %s", o->fd, o->type, o->pid, strerror(errno));
	if (o->async && fcntl(o->fd, F_SETFL, fcntl(o->fd, F_GETFL) | O_ASYNC))
		fail("fd %d: F_SETFL: %s", o->fd, strerror(errno));
}

static void check(const struct owned *o)
{
	struct f_owner_ex ex;
	int sig = fcntl(o->fd, F_GETSIG), fl = fcntl(o->fd, F_GETFL);

	if (fcntl(o->fd, F_GETOWN_EX, &ex))
		fail("fd %d: F_GETOWN_EX: %s", o->fd, strerror(errno));
	if (ex.pid != o->pid || (o->pid && (int)ex.type != o->type))
		fail("fd %d: owner %d of type %d, want %d of type %d", o->fd, ex.pid, ex.type, o->pid, o->type);
	if (sig != o->sig)
		fail("fd %d: signal %d, want %d", o->fd, sig, o->sig);
	if (!!(fl & O_ASYNC) != o->async)
		fail("fd %d: flags %#o, O_ASYNC wanted: %d", o->fd, fl, o->async);
}

int main(void)
{
	pthread_t th;
	pid_t child;
	int i, p[2];

	test_init();
	child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		setpgid(0, 0);
		for (;;)
			pause();
	}
	if (setpgid(child, child) && errno != EACCES)
		fail("setpgid: %s", strerror(errno));
	if (pthread_create(&th, NULL, sleeper, NULL))
		fail("pthread_create");
	while (!__atomic_load_n(&thread_tid, __ATOMIC_SEQ_CST))
		usleep(1000);
	for (i = 0; i < NPIPES; i++) {
		if (pipe(p))
			fail("pipe: %s", strerror(errno));
		fds[nfds++].fd = p[0];
		fds[nfds++].fd = p[1];
		if (i % 5 == 4) {
			int fd = open("/proc/self/exe", O_PATH);

			if (fd < 0)
				fail("open O_PATH: %s", strerror(errno));
			if (fcntl(fd, F_GETOWN_EX, &(struct f_owner_ex){0}) == 0)
				fail("fd %d: F_GETOWN_EX of O_PATH succeeded", fd);
		}
	}
	for (i = 0; i < nfds; i++) {
		owner(&fds[i], i, child);
		set(&fds[i]);
		check(&fds[i]);
	}
	test_ready();
	test_wait_stop();
	for (i = 0; i < nfds; i++)
		check(&fds[i]);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	pass();
}
