/*
 * ns_pid_lock - the init of a pid namespace of its own holds a POSIX
 * lock: after restore it still holds it, as its child sees with
 * F_GETLK (a write lock on bytes 0-9 of its file, held by pid 1, its
 * parent), and the child cannot take it.  filelocks.img must name the
 * holder by its pid in the namespace, 1, which the restore makes.
 *
 * The driver starts it with CLONE_NEWPID and dumps it with --file-locks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

static void check(int fd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10 };

	if (fcntl(fd, F_GETLK, &fl))
		fail("F_GETLK: %s", strerror(errno));
	if (fl.l_type != F_WRLCK || fl.l_pid != getppid() || fl.l_start != 0 || fl.l_len != 10)
		fail("F_GETLK: type %d pid %d range %lld+%lld, want a write lock of pid %d on 0+10", fl.l_type,
		     fl.l_pid, (long long)fl.l_start, (long long)fl.l_len, getppid());
}

int main(void)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10 };
	int fd, ready[2], status;
	pid_t child;
	char c;

	test_init();
	if (getpid() != 1)
		fail("pid %d, want 1 (start it with CLONE_NEWPID)", getpid());
	fd = open("locked", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, "0123456789abcdef", 16) != 16)
		fail("create locked: %s", strerror(errno));
	if (fcntl(fd, F_SETLK, &fl))
		fail("F_SETLK: %s", strerror(errno));
	if (pipe(ready))
		fail("pipe: %s", strerror(errno));
	child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		sigset_t set;
		int sig;

		close(ready[0]);
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		sigprocmask(SIG_BLOCK, &set, NULL);
		check(fd);
		if (write(ready[1], "x", 1) != 1)
			_exit(2);
		sigwait(&set, &sig);
		check(fd);
		_exit(0);
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		fail("child did not start");
	test_ready();
	test_wait_stop();
	if (kill(child, SIGUSR1) || waitpid(child, &status, 0) != child)
		fail("wake child %d: %s", child, strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("child failed its check (status %#x)", status);
	pass();
}
