/*
 * signalfd00 - a signalfd keeps its signal mask and flags across C/R.
 *
 * SIGUSR1 is blocked and a non-blocking signalfd reads it; a second,
 * blocking signalfd reads SIGUSR2 and SIGRTMIN+1.  Nothing is pending at
 * dump.  After restore: the first reads nothing (EAGAIN); one SIGUSR1 sent
 * to ourselves is read through it with its sender's pid; the second is
 * still blocking and does not take SIGUSR1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "zdtm.h"

int main(void)
{
	struct signalfd_siginfo si;
	struct pollfd p;
	sigset_t usr1, other;
	int sfd, sfd2;

	test_init();
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigemptyset(&other);
	sigaddset(&other, SIGUSR2);
	sigaddset(&other, SIGRTMIN + 1);
	if (sigprocmask(SIG_BLOCK, &usr1, NULL) || sigprocmask(SIG_BLOCK, &other, NULL))
		fail("sigprocmask: %s", test_strerror(errno));
	sfd = signalfd(-1, &usr1, SFD_NONBLOCK);
	sfd2 = signalfd(-1, &other, 0);
	if (sfd < 0 || sfd2 < 0)
		fail("signalfd: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	if (!(fcntl(sfd, F_GETFL) & O_NONBLOCK) || (fcntl(sfd2, F_GETFL) & O_NONBLOCK))
		fail("O_NONBLOCK of the signalfds (fds %d, %d) not restored", sfd, sfd2);
	if (read(sfd, &si, sizeof(si)) != -1 || errno != EAGAIN)
		fail("signalfd %d readable before any SIGUSR1: %s", sfd,
		     test_strerror(errno));
	if (kill(getpid(), SIGUSR1))
		fail("kill SIGUSR1: %s", test_strerror(errno));
	p.fd = sfd2;
	p.events = POLLIN;
	if (poll(&p, 1, 0) != 0)
		fail("signalfd %d (SIGUSR2, SIGRTMIN+1) readable after SIGUSR1: "
		     "mask wrong", sfd2);
	if (read(sfd, &si, sizeof(si)) != sizeof(si))
		fail("signalfd %d did not deliver SIGUSR1: %s", sfd,
		     test_strerror(errno));
	if (si.ssi_signo != SIGUSR1 || si.ssi_pid != (uint32_t)getpid())
		fail("signalfd %d read signal %u from pid %u, want SIGUSR1 (%d) "
		     "from %d", sfd, si.ssi_signo, si.ssi_pid, SIGUSR1, getpid());
	if (kill(getpid(), SIGRTMIN + 1))
		fail("kill SIGRTMIN+1: %s", test_strerror(errno));
	if (read(sfd2, &si, sizeof(si)) != sizeof(si) || si.ssi_signo != (uint32_t)SIGRTMIN + 1)
		fail("signalfd %d did not deliver SIGRTMIN+1: %s", sfd2,
		     test_strerror(errno));
	pass();
}
