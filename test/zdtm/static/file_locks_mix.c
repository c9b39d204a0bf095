/*
 * file_locks_mix - file locks of every kind survive a checkpoint (dumped
 * and restored with --file-locks; CRIU's file_locks00..08).
 *
 * The parent P and its child C hold, in files of the cwd:
 *   a  flock shared: P (fd 10), C (fd 20, its own open file)
 *   b  flock exclusive: P (fd 11)
 *   c  POSIX: P write 0-9, read 100-149, write 200-EOF (fd 12); C, through
 *      the same open file inherited by fork, write 50-59
 *   d  OFD: P read 0-4, write 10-19, write 4096-EOF (fd 13); C write
 *      30-39 (fd 22, its own open file)
 *   e  flock exclusive taken by P before the fork: one open file, held by
 *      both (fd 14)
 *   g  flock exclusive: C (fd 21)
 *   h  OFD read 0-EOF taken by P before the fork, P's fd then closed: C
 *      alone holds it (fd 15)
 *   i  flock exclusive taken by C through the open file it inherited from
 *      P (fd 16), held by both
 *   j  read lease: P (fd 17, read-only)
 *   k  write lease: P (fd 18, write-only)
 *   m  read lease being broken to none (P opened m for writing): P (fd 19,
 *      read-only), signalling P with SIGUSR1
 *   n  write lease being broken to read, taken by P (fd 24, read-write,
 *      signalling P with SIGUSR1), which then closed its descriptor: C
 *      alone holds it, P owns the file
 * A helper forked afterwards probes them from outside, with F_GETLK (type,
 * range and owner PID of each POSIX lock, no lock in the gaps), F_OFD_GETLK
 * (likewise, the owner is -1) and flock LOCK_NB from open files of its
 * own; the flocks' PIDs are read from /proc/PID/fdinfo; P asks F_GETLEASE
 * of its descriptors (none but j's, k's and m's has a lease; m's is
 * being broken to none) and C of n's (being broken to read, owned by P).
 * No SIGUSR1 comes but the two breaks' before the dump. That runs once
 * before "ready" and again after SIGTERM. Then P and C drop one lock of
 * each kind through the descriptor that held it and the helper sees it
 * gone: the locks belong to the same processes and open files as before.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define EOFLEN 0 /* l_len of a lock to the end of the file */

static pid_t parent, child;
static void set_lease(int fd, int type);
static volatile sig_atomic_t breaks; /* SIGUSR1 from lease breaks */

static void on_break(int sig)
{
	(void)sig;
	breaks++;
}

static int open_mode(const char *name, int fd, int mode)
{
	int f = open(name, mode | O_CREAT, 0644);

	if (f < 0 || dup2(f, fd) != fd)
		fail("open %s as fd %d: %s", name, fd, strerror(errno));
	close(f);
	return fd;
}

static int open_at(const char *name, int fd)
{
	return open_mode(name, fd, O_RDWR);
}

/*
 * break_lease takes a lease of type on fd, signalling SIGUSR1, and has
 * it broken by opening name with flags: the break must signal once, and
 * go on (another open still fails).
 */
static void break_lease(int fd, int type, const char *name, int flags)
{
	int before = breaks, i;

	set_lease(fd, type);
	if (fcntl(fd, F_SETSIG, SIGUSR1))
		fail("F_SETSIG: %s", strerror(errno));
	for (i = 0; i < 2; i++)
		if (open(name, flags | O_NONBLOCK) >= 0 || errno != EWOULDBLOCK)
			fail("open %s to break its lease: %s", name, strerror(errno));
	if (breaks != before + 1)
		fail("%s: %d SIGUSR1 from the lease break, want 1", name, (int)(breaks - before));
}

/* check_leases requires the leases of P's descriptors: j's, k's and m's only. */
static void check_leases(void)
{
	static const int fds[] = {10, 11, 12, 13, 14, 16, 17, 18, 19};
	int i, want, got;

	if (breaks != 2)
		fail("%d SIGUSR1 from lease breaks, want 2", (int)breaks);
	if (open("m", O_WRONLY | O_NONBLOCK) >= 0 || errno != EWOULDBLOCK)
		fail("m: its lease is not being broken: %s", strerror(errno));
	for (i = 0; i < (int)(sizeof(fds) / sizeof(fds[0])); i++) {
		want = fds[i] == 17 ? F_RDLCK : fds[i] == 18 ? F_WRLCK : F_UNLCK;
		got = fcntl(fds[i], F_GETLEASE);
		if (got != want)
			fail("fd %d: lease %d, want %d (%s)", fds[i], got, want, got < 0 ? strerror(errno) : "");
	}
}

static void lock(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};

	if (fcntl(fd, cmd, &fl))
		fail("fd %d: fcntl %d type %d %lld+%lld: %s", fd, cmd, type, (long long)start,
		     (long long)len, strerror(errno));
}

static void set_lease(int fd, int type)
{
	if (fcntl(fd, F_SETLEASE, type))
		fail("fd %d: F_SETLEASE %d: %s", fd, type, strerror(errno));
}

static void do_flock(int fd, int op)
{
	if (flock(fd, op))
		fail("flock fd %d op %d: %s", fd, op, strerror(errno));
}

/*
 * probe asks, with cmd (F_GETLK or F_OFD_GETLK), whether a write lock on
 * start+len of file name conflicts: want_type F_UNLCK means no lock, else
 * the lock found must be exactly want_type on start+len owned by want_pid.
 */
static void probe(const char *name, int cmd, off_t start, off_t len, short want_type, pid_t want_pid)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	int fd = open(name, O_RDWR);

	if (fd < 0 || fcntl(fd, cmd, &fl))
		fail("probe %s: %s", name, strerror(errno));
	close(fd);
	if (fl.l_type != want_type)
		fail("%s %lld+%lld: lock type %d (pid %d), want %d", name, (long long)start, (long long)len,
		     fl.l_type, fl.l_pid, want_type);
	if (want_type == F_UNLCK)
		return;
	if (fl.l_start != start || fl.l_len != len || fl.l_pid != want_pid)
		fail("%s: lock %lld+%lld pid %d, want %lld+%lld pid %d", name, (long long)fl.l_start,
		     (long long)fl.l_len, fl.l_pid, (long long)start, (long long)len, want_pid);
}

/* flock_probe requires flock(op | LOCK_NB) from a new open file to succeed or not. */
static void flock_probe(const char *name, int op, int can)
{
	int fd = open(name, O_RDONLY);
	int r;

	if (fd < 0)
		fail("open %s: %s", name, strerror(errno));
	r = flock(fd, op | LOCK_NB);
	if (r && errno != EWOULDBLOCK)
		fail("flock %s: %s", name, strerror(errno));
	if ((r == 0) != can)
		fail("flock %s op %d: %s, want %s", name, op, r ? "refused" : "granted", can ? "granted" : "refused");
	close(fd);
}

/* flock_pid requires the flock of pid's fd to be recorded as taken by want. */
static void flock_pid(pid_t pid, int fd, pid_t want)
{
	char path[64], line[256], kind[16];
	int n = 0, owner;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", pid, fd);
	f = fopen(path, "r");
	if (!f)
		fail("%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "lock: %*d: %15s %*s %*s %d", kind, &owner) != 2 || strcmp(kind, "FLOCK"))
			continue;
		if (owner != want)
			fail("%s: flock taken by %d, want %d", path, owner, want);
		n++;
	}
	fclose(f);
	if (n != 1)
		fail("%s: %d flocks, want 1", path, n);
}

/* check_all probes every lock and every gap. */
static void check_all(void)
{
	probe("c", F_GETLK, 0, 10, F_WRLCK, parent);
	probe("c", F_GETLK, 10, 40, F_UNLCK, 0);
	probe("c", F_GETLK, 50, 10, F_WRLCK, child);
	probe("c", F_GETLK, 60, 40, F_UNLCK, 0);
	probe("c", F_GETLK, 100, 50, F_RDLCK, parent);
	probe("c", F_GETLK, 150, 50, F_UNLCK, 0);
	probe("c", F_GETLK, 200, EOFLEN, F_WRLCK, parent);
	probe("d", F_OFD_GETLK, 0, 5, F_RDLCK, -1);
	probe("d", F_OFD_GETLK, 5, 5, F_UNLCK, 0);
	probe("d", F_OFD_GETLK, 10, 10, F_WRLCK, -1);
	probe("d", F_OFD_GETLK, 20, 10, F_UNLCK, 0);
	probe("d", F_OFD_GETLK, 30, 10, F_WRLCK, -1);
	probe("d", F_OFD_GETLK, 40, 4056, F_UNLCK, 0);
	probe("d", F_OFD_GETLK, 4096, EOFLEN, F_WRLCK, -1);
	probe("h", F_OFD_GETLK, 0, EOFLEN, F_RDLCK, -1);
	flock_probe("a", LOCK_SH, 1);
	flock_probe("a", LOCK_EX, 0);
	flock_probe("b", LOCK_SH, 0);
	flock_probe("e", LOCK_SH, 0);
	flock_probe("g", LOCK_SH, 0);
	flock_pid(parent, 10, parent);
	flock_pid(parent, 11, parent);
	flock_pid(parent, 14, parent);
	flock_pid(child, 14, parent);
	flock_pid(child, 20, child);
	flock_pid(child, 21, child);
	flock_probe("i", LOCK_SH, 0);
	flock_pid(parent, 16, child);
	flock_pid(child, 16, child);
}

/* check_released probes the locks P and C dropped. */
static void check_released(void)
{
	flock_probe("b", LOCK_EX, 1);
	flock_probe("g", LOCK_EX, 1);
	probe("c", F_GETLK, 0, 10, F_UNLCK, 0);
	probe("c", F_GETLK, 50, 10, F_UNLCK, 0);
	probe("d", F_OFD_GETLK, 10, 10, F_UNLCK, 0);
	probe("d", F_OFD_GETLK, 30, 10, F_UNLCK, 0);
	probe("c", F_GETLK, 100, 50, F_RDLCK, parent);
	flock_probe("a", LOCK_EX, 0);
}

/* in_helper runs check in a new process, which holds no lock. */
static void in_helper(void (*check)(void))
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (pid == 0) {
		check();
		exit(0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("the helper found a lock wrong (status %#x)", status);
}

/* child_leases requires n's lease being broken to read, owned by P, and no other break signal. */
static int child_leases(void)
{
	if (breaks != 2 || fcntl(24, F_GETLEASE) != F_RDLCK || fcntl(24, F_GETOWN) != parent)
		return 0;
	return open("n", O_RDONLY | O_NONBLOCK) < 0 && errno == EWOULDBLOCK;
}

/* child_main takes C's locks, then drops two when asked on cmd. */
static void child_main(int cmd, int ack)
{
	char c;

	do_flock(open_at("a", 20), LOCK_SH);
	do_flock(open_at("g", 21), LOCK_EX);
	lock(open_at("d", 22), F_OFD_SETLK, F_WRLCK, 30, 10);
	lock(12, F_SETLK, F_WRLCK, 50, 10);
	do_flock(16, LOCK_EX);
	if (write(ack, "k", 1) != 1)
		exit(1);
	while (read(cmd, &c, 1) < 0 && errno == EINTR)
		;
	if (!child_leases()) {
		if (write(ack, "f", 1) != 1)
			exit(1);
		for (;;)
			pause();
	}
	do_flock(21, LOCK_UN);
	lock(12, F_SETLK, F_UNLCK, 50, 10);
	lock(22, F_OFD_SETLK, F_UNLCK, 30, 10);
	if (write(ack, "k", 1) != 1)
		exit(1);
	for (;;)
		pause();
}

static void wait_ack(int ack)
{
	char c;
	ssize_t r;

	while ((r = read(ack, &c, 1)) < 0 && errno == EINTR)
		;
	if (r != 1)
		fail("the child did not answer: %s", r ? strerror(errno) : "EOF");
	if (c != 'k')
		fail("the child found the lease of n wrong (or a signal from a break)");
}

int main(void)
{
	int cmd[2], ack[2];

	test_init();
	signal(SIGUSR1, on_break);
	parent = getpid();
	if (pipe(cmd) || pipe(ack))
		fail("pipe: %s", strerror(errno));
	do_flock(open_at("a", 10), LOCK_SH);
	do_flock(open_at("b", 11), LOCK_EX);
	open_at("c", 12);
	lock(12, F_SETLK, F_WRLCK, 0, 10);
	lock(12, F_SETLK, F_RDLCK, 100, 50);
	lock(12, F_SETLK, F_WRLCK, 200, EOFLEN);
	open_at("d", 13);
	lock(13, F_OFD_SETLK, F_RDLCK, 0, 5);
	lock(13, F_OFD_SETLK, F_WRLCK, 10, 10);
	lock(13, F_OFD_SETLK, F_WRLCK, 4096, EOFLEN);
	do_flock(open_at("e", 14), LOCK_EX);
	lock(open_at("h", 15), F_OFD_SETLK, F_RDLCK, 0, EOFLEN);
	open_at("i", 16);
	set_lease(open_mode("j", 17, O_RDONLY), F_RDLCK);
	set_lease(open_mode("k", 18, O_WRONLY), F_WRLCK);
	break_lease(open_mode("m", 19, O_RDONLY), F_RDLCK, "m", O_WRONLY);
	break_lease(open_mode("n", 24, O_RDWR), F_WRLCK, "n", O_RDONLY);
	child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0)
		child_main(cmd[0], ack[1]);
	close(15);
	close(24);
	wait_ack(ack[0]);
	in_helper(check_all);
	check_leases();
	test_ready();
	test_wait_stop();
	in_helper(check_all);
	check_leases();
	do_flock(11, LOCK_UN);
	lock(12, F_SETLK, F_UNLCK, 0, 10);
	lock(13, F_OFD_SETLK, F_UNLCK, 10, 10);
	if (write(cmd[1], "u", 1) != 1)
		fail("write to the child: %s", strerror(errno));
	wait_ack(ack[0]);
	in_helper(check_released);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	pass();
}
