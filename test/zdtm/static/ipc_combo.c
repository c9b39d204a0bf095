/*
 * ipc_combo - every kind of file and IPC object amber handles, all at once,
 * held by a parent and its one child.
 *
 * Before the fork the parent makes, and both then hold (unless said):
 *   - a pipe with 3,000 patterned bytes unread; the parent keeps both ends,
 *     the child the read end;
 *   - a SOCK_SEQPACKET socketpair, end 0 in the parent, end 1 in the child,
 *     with one message queued each way;
 *   - a FIFO "ipc_combo.fifo" in the cwd with 5,000 bytes in flight: the
 *     parent keeps the write end, the child the read end (O_NONBLOCK);
 *   - an eventfd (O_NONBLOCK) holding 7;
 *   - a memfd "ipc_combo" of 2 pages sealed with F_SEAL_SHRINK, mapped
 *     MAP_SHARED before the fork (the child also maps it a second time);
 *   - a 2-page MAP_SHARED|MAP_ANONYMOUS area;
 *   - a 2-page IPC_PRIVATE SysV shm segment attached before the fork
 *     (2 attachments);
 *     for each of these three, page 0 is written by the parent and page 1
 *     by the child before the dump;
 *   - a pty pair in raw mode: the master in the parent, the slave in the
 *     child, with bytes queued both ways;
 *   - an unlinked file "ipc_combo.unlinked" of 10,000 bytes, open in the
 *     parent only at offset 4321;
 *   - a directory "ipc_combo.dir" in the cwd (the driver creates files in
 *     the cwd during the dump: a watch on the cwd would have events queued,
 *     which amber refuses to dump);
 *   - two plain pipes for the test's own control messages.
 * Then the parent alone has an epoll watching its pipe read end (EPOLLIN,
 * PIPE_TAG) and the eventfd (EPOLLIN, EFD_TAG), a periodic 200 ms timerfd
 * and ITIMER_REAL every 50 ms; the child alone has a signalfd for SIGUSR1
 * (blocked) and an inotify watch (IN_CREATE) on ipc_combo.dir.  The child
 * waits blocked in read() on its control pipe.
 *
 * After SIGTERM (only the parent gets it):
 *   1. the parent checks what it holds: epoll reports exactly the pipe and
 *      the eventfd with their data, the pipe still holds 3,000 bytes, the
 *      eventfd 7 (fdinfo), the timerfd's interval and that it fires twice,
 *      that SIGALRM keeps coming, the unlinked file, the three shared
 *      memories, the child's queued message, the child's queued pty bytes,
 *      the FIFO's inode and the bytes in it;
 *   2. the child (told through the control pipe) checks its parent, reads
 *      the pipe's and the FIFO's bytes, the parent's queued message, the
 *      eventfd's 7, the pty bytes queued for it, that no signal is pending
 *      on its signalfd, its inotify watch (fdinfo: wd, mask, the
 *      directory's inode), the shared memories (memfd through both
 *      mappings and pread, seals), then writes page 1 of each shared memory, 5 into the
 *      eventfd, a message into the socket and "pong" into the pty slave;
 *   3. the parent sees exactly the eventfd ready in its epoll, reads 5,
 *      sees the child's writes, message and "pong"; then writes page 0 of
 *      each shared memory, bytes into the pipe (epoll reports it), the
 *      FIFO, the socket and "ping" into the pty master, creates the file
 *      "ipc_combo.dir/created" and sends the child SIGUSR1;
 *   4. the child sees all of that: the pages, the bytes, the message,
 *      "ping", SIGUSR1 from its parent through the signalfd, and IN_CREATE
 *      "created" on its watch; it answers "DONE" and exits 0.
 * The parent prints PASS if all went well, else the first failure, the
 * child's prefixed with "child".  At exit, PASS or FAIL, the child is
 * killed and reaped if still there, and the shm segment, the FIFO, the
 * file created and the directory are removed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define PG		4096UL

#define PIPE_LEN	3000
#define PIPE_SEED	0xc0b0001ULL
#define PIPE2		"pipe bytes after restore"

#define FIFO_NAME	"ipc_combo.fifo"
#define FIFO_LEN	5000
#define FIFO_SEED	0xc0b0002ULL
#define FIFO2		"fifo bytes after restore"

#define UNL_NAME	"ipc_combo.unlinked"
#define UNL_SIZE	10000
#define UNL_OFF		4321
#define UNL_CHECK	200
#define UNL_SEED	0xc0b0003ULL

/* The child's inotify watch is on a directory in the cwd, not on the cwd
 * itself: the test driver creates files in the cwd (amber's stdout and
 * stderr) while it dumps, and amber refuses to dump an inotify instance
 * with events not read yet. */
#define WATCHED		"ipc_combo.dir"
#define CREATED_NAME	"created"
#define CREATED		WATCHED "/" CREATED_NAME

#define MSG_P2C		"parent to child, queued before the dump"
#define MSG_C2P		"child to parent, queued"
#define MSG_P2C_2	"parent to child after restore"
#define MSG_C2P_2	"child to parent after restore"

#define TO_SLAVE	"queued for the slave"
#define TO_MASTER	"queued for the master"

#define EFD_INIT	7
#define EFD_CHILD	5
#define PIPE_TAG	0x1111222233334444ULL
#define EFD_TAG		0xdeadbeef00000042ULL

#define TFD_NS		200000000L	/* timerfd interval */
#define ITIMER_US	50000		/* ITIMER_REAL interval */

/* Seeds of the three shared memories: page 0 by the parent, page 1 by
 * the child, before the dump (+0) and after the restore (+0x100). */
#define MFD_SEED	0xc0b1000ULL
#define ANON_SEED	0xc0b2000ULL
#define SHM_SEED	0xc0b3000ULL
#define LATE		0x100

static const char *side = "parent";
static int is_child;
static pid_t root_pid, child_pid;

/* Descriptors and areas; -1 / NULL where a process does not hold one. */
static int p[2], sk[2], fr, fw, efd, mfd, ptm, pts, ufd, ctl[2], rep[2];
static int ep = -1, tfd = -1, sfd = -1, ify = -1, wd = -1;
static unsigned char *mmem, *mmem2, *anon, *shm;
static int shmid = -1;
static struct stat ufd_was;

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

/* The first failure: the parent prints it, the child sends it to the
 * parent through its report pipe (and stderr if that fails). */
static void bad(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void bad(const char *fmt, ...)
{
	char msg[700], line[720];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *c = msg; *c; c++)
		if (*c == '\n')
			*c = ' ';
	if (!is_child)
		fail("%s", msg);
	n = snprintf(line, sizeof(line), "FAIL %s\n", msg);
	if (n > (int)sizeof(line) - 1) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (write(rep[1], line, n) != n) {
		n = snprintf(line, sizeof(line), "ipc_combo child: FAIL %s (report pipe: %s)\n",
			     msg, test_strerror(errno));
		if (write(2, line, n) < 0)
			_exit(3);
	}
	_exit(1);
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* poll() one fd for up to ms milliseconds (SIGALRM interrupts the parent
 * every 50 ms); revents, or 0 on timeout. */
static int wait_fd(int fd, short events, int ms)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		long left = ms - ms_since(&t0);
		struct pollfd pf = { .fd = fd, .events = events };
		int n;

		if (left < 0)
			left = 0;
		n = poll(&pf, 1, left);
		if (n > 0)
			return pf.revents;
		if (n == 0)
			return 0;
		if (errno != EINTR)
			bad("%s: poll fd %d: %s", side, fd, test_strerror(errno));
	}
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Read exactly len bytes from fd (pipe, FIFO, pty) within ms. */
static void read_exact(int fd, void *buf, size_t len, int ms, const char *what)
{
	size_t got = 0;
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (got < len) {
		long left = ms - ms_since(&t0);
		ssize_t n;

		if (left < 0 || !wait_fd(fd, POLLIN, left))
			bad("%s: %s (fd %d): only %zu of %zu bytes within %d ms", side,
			    what, fd, got, len, ms);
		n = read(fd, (char *)buf + got, len - got);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			bad("%s: %s (fd %d): read after %zu of %zu bytes: %s", side, what,
			    fd, got, len, n < 0 ? test_strerror(errno) : "EOF");
		got += n;
	}
}

static void expect_bytes(int fd, const char *want, int ms, const char *what)
{
	char buf[256];
	size_t len = strlen(want);

	read_exact(fd, buf, len, ms, what);
	if (memcmp(buf, want, len))
		bad("%s: %s (fd %d): read \"%.*s\", want \"%s\"", side, what, fd,
		    (int)len, buf, want);
}

/* Nothing more arrives on fd within ms. */
static void expect_no_more(int fd, int ms, const char *what)
{
	int n = -1;

	if (wait_fd(fd, POLLIN, ms)) {
		ioctl(fd, FIONREAD, &n);
		bad("%s: %s (fd %d): more bytes than expected (FIONREAD %d)", side, what,
		    fd, n);
	}
}

static void expect_patterned(int fd, size_t len, uint64_t seed, const char *what)
{
	static unsigned char buf[FIFO_LEN > PIPE_LEN ? FIFO_LEN : PIPE_LEN];
	long off;

	read_exact(fd, buf, len, 2000, what);
	if ((off = pattern_mismatch(buf, len, seed)) >= 0)
		bad("%s: %s (fd %d): byte %ld is 0x%02x, want 0x%02x", side, what, fd,
		    off, buf[off], pattern_byte(off, seed));
}

/* A read of fd must fail with EAGAIN: nothing to read, O_NONBLOCK kept. */
static void expect_eagain(int fd, size_t len, const char *what)
{
	char buf[256];
	ssize_t n;

	do
		n = read(fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		bad("%s: fd %d (%s): nothing should be readable, but read() returned %zd",
		    side, fd, what, n);
	if (errno != EAGAIN)
		bad("%s: fd %d (%s): read() failed with %s, want EAGAIN (O_NONBLOCK lost?)",
		    side, fd, what, test_strerror(errno));
}

static int fionread(int fd, const char *what)
{
	int n;

	if (ioctl(fd, FIONREAD, &n))
		bad("%s: FIONREAD on %s (fd %d): %s", side, what, fd, test_strerror(errno));
	return n;
}

/* Receive one seqpacket message, which must be exactly want. */
static void expect_msg(int s, const char *want, int ms, const char *what)
{
	char buf[512];
	ssize_t n;

	if (!wait_fd(s, POLLIN, ms))
		bad("%s: socketpair end fd %d: no message within %d ms (%s)", side, s,
		    ms, what);
	do
		n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		bad("%s: socketpair end fd %d: recv (%s): %s", side, s, what,
		    test_strerror(errno));
	if (n != (ssize_t)strlen(want) || memcmp(buf, want, n))
		bad("%s: socketpair end fd %d: got %zd-byte message \"%.*s\", want "
		    "\"%s\" (%s)", side, s, n, (int)n, buf, want, what);
}

static void expect_no_msg(int s, const char *what)
{
	char buf[512];
	ssize_t n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);

	if (n >= 0)
		bad("%s: socketpair end fd %d: an extra %zd-byte message \"%.*s\" after %s",
		    side, s, n, (int)(n > 0 ? n : 0), buf, what);
	if (errno != EAGAIN)
		bad("%s: socketpair end fd %d: recv: %s", side, s, test_strerror(errno));
}

static void send_msg(int s, const char *msg)
{
	ssize_t n = send(s, msg, strlen(msg), MSG_DONTWAIT);

	if (n != (ssize_t)strlen(msg))
		bad("%s: send \"%s\" on socketpair end fd %d: %s", side, msg, s,
		    n < 0 ? test_strerror(errno) : "short");
}

static void write_all(int fd, const void *buf, size_t len, const char *what)
{
	ssize_t n;

	do
		n = write(fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)len)
		bad("%s: write %zu bytes to %s (fd %d): %s", side, len, what, fd,
		    n < 0 ? test_strerror(errno) : "short write");
}

static void expect_area(const unsigned char *a, uint64_t seed, const char *what)
{
	long off = pattern_mismatch(a, PG, seed);

	if (off >= 0)
		bad("%s: %s: byte %ld is 0x%02x, want 0x%02x", side, what, off, a[off],
		    pattern_byte(off, seed));
}

static void expect_link(int fd, const char *want, const char *what)
{
	char path[64], link[PATH_MAX];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	if (strcmp(link, want))
		bad("%s: %s (fd %d) is \"%s\", want \"%s\"", side, what, fd, link, want);
}

/* The first line of /proc/self/fdinfo/fd starting with key, or fail. */
static void fdinfo_line(int fd, const char *key, char *out, size_t len, const char *what)
{
	char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	if (!f)
		bad("%s: open %s (%s): %s", side, path, what, test_strerror(errno));
	while (fgets(out, len, f))
		if (!strncmp(out, key, strlen(key))) {
			fclose(f);
			return;
		}
	fclose(f);
	bad("%s: no \"%s\" line in %s (%s)", side, key, path, what);
}

static uint64_t read_efd(void)
{
	uint64_t v;
	ssize_t n = read(efd, &v, sizeof(v));

	if (n != sizeof(v))
		bad("%s: read eventfd (fd %d): %s", side, efd,
		    n < 0 ? test_strerror(errno) : "short read");
	return v;
}

static void expect_efd_empty(void)
{
	expect_eagain(efd, sizeof(uint64_t), "eventfd, after its counter was read");
}

/* The memfd's seals and size: F_SEAL_SHRINK only, 2 pages, cannot shrink. */
static void check_memfd_file(void)
{
	struct stat st;
	int seals = fcntl(mfd, F_GET_SEALS);

	expect_link(mfd, "/memfd:ipc_combo (deleted)", "memfd");
	if (seals != F_SEAL_SHRINK)
		bad("%s: memfd (fd %d): seals %#x, want F_SEAL_SHRINK (%#x)", side, mfd,
		    seals, F_SEAL_SHRINK);
	if (fstat(mfd, &st) || st.st_size != 2 * PG)
		bad("%s: memfd (fd %d): size %ld, want %lu", side, mfd, (long)st.st_size,
		    2 * PG);
	if (ftruncate(mfd, PG) != -1 || errno != EPERM)
		bad("%s: memfd (fd %d): ftruncate to shrink did not fail with EPERM: %s",
		    side, mfd, test_strerror(errno));
}

/* Page pg of the memfd through every way this process has to it. */
static void check_memfd_page(int pg, uint64_t seed, const char *who)
{
	static unsigned char buf[PG];
	char what[256];

	snprintf(what, sizeof(what), "memfd page %d (written by the %s) in the mapping "
		 "inherited from before the fork", pg, who);
	expect_area(mmem + pg * PG, seed, what);
	if (mmem2) {
		snprintf(what, sizeof(what), "memfd page %d (written by the %s) in the "
			 "child's own mapping", pg, who);
		expect_area(mmem2 + pg * PG, seed, what);
	}
	if (pread(mfd, buf, PG, pg * PG) != (ssize_t)PG)
		bad("%s: pread memfd page %d: %s", side, pg, test_strerror(errno));
	snprintf(what, sizeof(what), "memfd page %d (written by the %s) read by pread()",
		 pg, who);
	expect_area(buf, seed, what);
}

static void check_shm_stat(void)
{
	struct shmid_ds ds;

	if (shmctl(shmid, IPC_STAT, &ds))
		bad("%s: IPC_STAT of shm segment %d: %s", side, shmid, test_strerror(errno));
	if (ds.shm_segsz != 2 * PG || ds.shm_nattch != 2)
		bad("%s: shm segment %d: size %zu, %lu attachments; want %lu and 2 (one "
		    "in each process)", side, shmid, ds.shm_segsz,
		    (unsigned long)ds.shm_nattch, 2 * PG);
}

/* Page pg of each shared memory holds what the parent (pg 0) or the child
 * (pg 1) wrote, before the dump (late 0) or after (late LATE). */
static void check_shared_page(int pg, uint64_t late)
{
	const char *who = pg ? "child" : "parent";
	const char *when = late ? "after the restore" : "before the dump";
	char what[128], who_when[48];

	snprintf(what, sizeof(what), "MAP_SHARED anonymous page %d (written by the %s %s)",
		 pg, who, when);
	expect_area(anon + pg * PG, ANON_SEED + late + pg, what);
	snprintf(what, sizeof(what), "SysV shm segment page %d (written by the %s %s)",
		 pg, who, when);
	expect_area(shm + pg * PG, SHM_SEED + late + pg, what);
	snprintf(who_when, sizeof(who_when), "%s %s", who, when);
	check_memfd_page(pg, MFD_SEED + late + pg, who_when);
}

static void write_shared_page(int pg, uint64_t late)
{
	fill_pattern(anon + pg * PG, PG, ANON_SEED + late + pg);
	fill_pattern(shm + pg * PG, PG, SHM_SEED + late + pg);
	fill_pattern((mmem2 ? mmem2 : mmem) + pg * PG, PG, MFD_SEED + late + pg);
}

/* --- the child ----------------------------------------------------------- */

static void child_report(const char *word)
{
	char line[32];
	int n = snprintf(line, sizeof(line), "%s\n", word);

	if (write(rep[1], line, n) != n)
		_exit(3);
}

/* Wait for the parent's go byte c; exit quietly if the parent is gone. */
static void child_wait(char c)
{
	char got;
	ssize_t n;

	do
		n = read(ctl[0], &got, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		_exit(2);
	if (got != c)
		bad("child: control byte '%c', want '%c'", got, c);
}

static void child_check_inotify_watch(void)
{
	char line[256];
	unsigned int w, mask;
	unsigned long ino;
	struct stat st;

	fdinfo_line(ify, "inotify wd:", line, sizeof(line), "inotify");
	if (sscanf(line, "inotify wd:%x ino:%lx sdev:%*x mask:%x", &w, &ino, &mask) != 3)
		bad("child: cannot parse inotify fdinfo line \"%s\"", line);
	if (stat(WATCHED, &st))
		bad("child: stat %s: %s", WATCHED, test_strerror(errno));
	if ((int)w != wd || ino != st.st_ino || mask != IN_CREATE)
		bad("child: inotify fd %d watches wd %u ino %lu mask %#x; want wd %d on "
		    WATCHED " (ino %lu) mask IN_CREATE (%#x)", ify, w, ino, mask, wd,
		    (unsigned long)st.st_ino, IN_CREATE);
}

/* Read inotify events until IN_CREATE of CREATED on our watch. */
static void child_expect_created(void)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	char seen[512] = "";
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		long left = 1500 - ms_since(&t0);
		ssize_t n;

		if (left < 0 || !wait_fd(ify, POLLIN, left))
			bad("child: inotify fd %d: no IN_CREATE \"%s\" on wd %d within 1.5 s "
			    "(other events:%s)", ify, CREATED, wd, seen[0] ? seen : " none");
		n = read(ify, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			bad("child: read inotify fd %d: %s", ify,
			    n < 0 ? test_strerror(errno) : "EOF");
		for (char *c = buf; c < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)c;
			const char *name = ev->len ? ev->name : "";

			if (!strcmp(name, CREATED_NAME)) {
				if (ev->wd != wd || !(ev->mask & IN_CREATE))
					bad("child: inotify fd %d: \"%s\" reported with wd %d "
					    "mask %#x, want wd %d IN_CREATE", ify, CREATED_NAME,
					    ev->wd, ev->mask, wd);
				return;
			}
			if (strlen(seen) + strlen(name) + 40 < sizeof(seen))
				snprintf(seen + strlen(seen), sizeof(seen) - strlen(seen),
					 " wd %d mask %#x \"%s\";", ev->wd, ev->mask, name);
			c += sizeof(*ev) + ev->len;
		}
	}
}

static void child_main(void) __attribute__((noreturn));
static void child_main(void)
{
	struct signalfd_siginfo si;
	sigset_t usr1;
	ssize_t n;

	is_child = 1;
	side = "child";
	close(p[1]);
	close(sk[0]);
	close(fw);
	close(ufd);
	close(ptm);
	close(ctl[1]);
	close(rep[0]);

	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &usr1, NULL))
		bad("child: block SIGUSR1: %s", test_strerror(errno));
	sfd = signalfd(-1, &usr1, SFD_NONBLOCK);
	if (sfd < 0)
		bad("child: signalfd: %s", test_strerror(errno));
	ify = inotify_init1(IN_NONBLOCK);
	if (ify < 0)
		bad("child: inotify_init1: %s", test_strerror(errno));
	wd = inotify_add_watch(ify, WATCHED, IN_CREATE);
	if (wd < 0)
		bad("child: inotify_add_watch on %s: %s", WATCHED, test_strerror(errno));
	mmem2 = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (mmem2 == MAP_FAILED)
		bad("child: mmap the memfd: %s", test_strerror(errno));
	write_shared_page(1, 0);
	send_msg(sk[1], MSG_C2P);
	write_all(pts, TO_MASTER, strlen(TO_MASTER), "pty slave");
	/* The parent's bytes are through the pty's buffer: all is in flight. */
	if (!wait_fd(pts, POLLIN, 2000))
		bad("child: the parent's bytes never reached the pty slave");
	child_report("SETUP");

	child_wait('1');	/* checkpointed here */

	if (getppid() != root_pid)
		bad("child: parent is pid %d, want %d", getppid(), root_pid);
	/* The pipe: the parent's bytes, nothing more. */
	expect_patterned(p[0], PIPE_LEN, PIPE_SEED, "pipe read end");
	if (fionread(p[0], "pipe read end"))
		bad("child: pipe read end (fd %d): %d bytes more than the %d in flight",
		    p[0], fionread(p[0], "pipe"), PIPE_LEN);
	/* The socketpair: the parent's queued message, whole. */
	expect_msg(sk[1], MSG_P2C, 1000, "queued before the dump");
	expect_no_msg(sk[1], "the parent's queued message");
	/* The FIFO. */
	expect_patterned(fr, FIFO_LEN, FIFO_SEED, "FIFO read end");
	expect_eagain(fr, 1, "FIFO read end, after the bytes in flight");
	/* The eventfd. */
	if ((n = read_efd()) != EFD_INIT)
		bad("child: eventfd (fd %d) read %zd, want %d", efd, n, EFD_INIT);
	expect_efd_empty();
	/* The signalfd: nothing pending yet. */
	expect_eagain(sfd, sizeof(si), "signalfd, before the parent sent SIGUSR1");
	child_check_inotify_watch();
	/* The pty slave: the master's queued bytes. */
	expect_bytes(pts, TO_SLAVE, 1000, "pty slave, bytes queued before the dump");
	expect_no_more(pts, 100, "pty slave");
	/* Shared memories. */
	check_memfd_file();
	check_shm_stat();
	check_shared_page(0, 0);
	check_shared_page(1, 0);

	write_shared_page(1, LATE);
	{
		uint64_t v = EFD_CHILD;
		write_all(efd, &v, sizeof(v), "eventfd");
	}
	send_msg(sk[1], MSG_C2P_2);
	write_all(pts, "pong", 4, "pty slave");
	child_report("STEP1");

	child_wait('2');

	check_shared_page(0, LATE);
	expect_bytes(p[0], PIPE2, 1000, "pipe read end, bytes written after the restore");
	expect_bytes(fr, FIFO2, 1000, "FIFO read end, bytes written after the restore");
	expect_msg(sk[1], MSG_P2C_2, 1000, "sent after the restore");
	expect_bytes(pts, "ping", 1000, "pty slave, bytes written after the restore");
	if (!wait_fd(sfd, POLLIN, 1500))
		bad("child: signalfd (fd %d): the parent's SIGUSR1 not readable within 1.5 s",
		    sfd);
	if ((n = read(sfd, &si, sizeof(si))) != sizeof(si))
		bad("child: read signalfd (fd %d): %s", sfd,
		    n < 0 ? test_strerror(errno) : "short read");
	if (si.ssi_signo != SIGUSR1 || si.ssi_pid != (uint32_t)root_pid)
		bad("child: signalfd (fd %d) read signal %u from pid %u, want SIGUSR1 (%d) "
		    "from %d", sfd, si.ssi_signo, si.ssi_pid, SIGUSR1, root_pid);
	child_expect_created();
	child_report("DONE");
	_exit(0);
}

/* --- the parent ---------------------------------------------------------- */

static int child_reaped;

/* At exit, PASS or FAIL: nothing left behind. */
static void cleanup(void)
{
	if (getpid() != root_pid)
		return;
	if (child_pid > 0 && !child_reaped) {
		kill(child_pid, SIGKILL);
		waitpid(child_pid, NULL, 0);
	}
	if (shmid >= 0)
		shmctl(shmid, IPC_RMID, NULL);
	unlink(FIFO_NAME);
	unlink(CREATED);
	rmdir(WATCHED);
	unlink(UNL_NAME);
}

/* What became of the child, waiting up to wait_ms for it to end. */
static void describe_child(char *buf, size_t len, int wait_ms)
{
	int status;
	pid_t r;

	for (int i = 0;; i++) {
		r = waitpid(child_pid, &status, WNOHANG);
		if (r == child_pid) {
			child_reaped = 1;
			if (WIFEXITED(status))
				snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
			else if (WIFSIGNALED(status))
				snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
					 strsignal(WTERMSIG(status)));
			else
				snprintf(buf, len, "status %#x", status);
			return;
		}
		if (r < 0) {
			snprintf(buf, len, "waitpid: %s", test_strerror(errno));
			return;
		}
		if (i * 20 >= wait_ms)
			break;
		sleep_ms(20);
	}
	snprintf(buf, len, "still running");
}

/* Wait for the child's report line, which must be want. */
static void parent_expect_report(const char *want, int ms)
{
	char line[800], how[128];
	size_t got = 0;
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (got == 0 || line[got - 1] != '\n') {
		long left = ms - ms_since(&t0);
		ssize_t n;

		if (got == sizeof(line) - 1)
			break;
		if (left < 0 || !wait_fd(rep[0], POLLIN, left)) {
			describe_child(how, sizeof(how), 0);
			fail("child (pid %d) did not report \"%s\" within %d ms (it is %s)",
			     child_pid, want, ms, how);
		}
		n = read(rep[0], line + got, sizeof(line) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			describe_child(how, sizeof(how), 1000);
			fail("child (pid %d) %s before reporting \"%s\" (report pipe: %s)",
			     child_pid, how, want, n < 0 ? test_strerror(errno) : "EOF");
		}
		got += n;
	}
	line[got] = 0;
	line[strcspn(line, "\n")] = 0;
	if (!strncmp(line, "FAIL ", 5))
		fail("%s", line + 5);
	if (strcmp(line, want))
		fail("child (pid %d) reported \"%s\", want \"%s\"", child_pid, line, want);
}

static void go(char c)
{
	write_all(ctl[1], &c, 1, "the child's control pipe");
}

/* epoll_wait(0) must report exactly the tags given (all EPOLLIN). */
static void parent_expect_epoll(int want_pipe, int want_efd, const char *when)
{
	struct epoll_event ev[8];
	int n, pipe_seen = 0, efd_seen = 0;
	char got[256] = "";

	do
		n = epoll_wait(ep, ev, 8, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		fail("epoll_wait on epoll fd %d: %s", ep, test_strerror(errno));
	for (int i = 0; i < n; i++) {
		snprintf(got + strlen(got), sizeof(got) - strlen(got), " {events %#x data %#llx}",
			 ev[i].events, (unsigned long long)ev[i].data.u64);
		if (ev[i].data.u64 == PIPE_TAG && ev[i].events == EPOLLIN)
			pipe_seen++;
		else if (ev[i].data.u64 == EFD_TAG && ev[i].events == EPOLLIN)
			efd_seen++;
		else
			pipe_seen = efd_seen = -100;
	}
	if (pipe_seen != want_pipe || efd_seen != want_efd)
		fail("epoll fd %d %s reports%s; want %s%s%s", ep, when, n ? got : " nothing",
		     want_pipe ? "EPOLLIN with the pipe's data 0x1111222233334444" : "",
		     want_pipe && want_efd ? " and " : "",
		     want_efd ? "EPOLLIN with the eventfd's data 0xdeadbeef00000042" :
		     want_pipe ? "" : "nothing");
}

static void parent_check_timers(void)
{
	struct itimerspec cur;
	struct itimerval itv;
	uint64_t ticks;
	int a0;

	if (timerfd_gettime(tfd, &cur))
		fail("timerfd_gettime fd %d: %s", tfd, test_strerror(errno));
	if (cur.it_interval.tv_sec != 0 || cur.it_interval.tv_nsec != TFD_NS)
		fail("timerfd %d: interval %ld.%09ld s, want 0.2 s", tfd,
		     (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
	if (!cur.it_value.tv_sec && !cur.it_value.tv_nsec)
		fail("timerfd %d is disarmed", tfd);
	for (int i = 0; i < 2; i++) {
		if (!wait_fd(tfd, POLLIN, 1000))
			fail("timerfd %d (200 ms period) did not fire within 1 s (%s time)",
			     tfd, i ? "second" : "first");
		if (read(tfd, &ticks, sizeof(ticks)) != sizeof(ticks) || ticks < 1)
			fail("read timerfd %d: %s", tfd, test_strerror(errno));
	}

	if (getitimer(ITIMER_REAL, &itv))
		fail("getitimer: %s", test_strerror(errno));
	if (itv.it_interval.tv_sec != 0 || itv.it_interval.tv_usec != ITIMER_US)
		fail("ITIMER_REAL interval %ld.%06ld s, want 0.05 s",
		     (long)itv.it_interval.tv_sec, (long)itv.it_interval.tv_usec);
	a0 = alarms;
	sleep_ms(500);
	if (alarms - a0 < 3)
		fail("ITIMER_REAL (50 ms): only %d SIGALRM in 500 ms", alarms - a0);
}

static void parent_check_unlinked(void)
{
	unsigned char buf[UNL_CHECK];
	struct stat st;
	off_t pos;

	if (fstat(ufd, &st))
		fail("fstat unlinked file fd %d: %s", ufd, test_strerror(errno));
	if (st.st_nlink != 0 || st.st_size != UNL_SIZE || st.st_mode != ufd_was.st_mode)
		fail("unlinked file fd %d: nlink %lu size %ld mode %#o, want 0, %d, %#o", ufd,
		     (unsigned long)st.st_nlink, (long)st.st_size, st.st_mode, UNL_SIZE,
		     ufd_was.st_mode);
	{
		char path[64], link[PATH_MAX];
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", ufd);
		n = readlink(path, link, sizeof(link) - 1);
		link[n > 0 ? n : 0] = 0;
		if (n < 10 || strcmp(link + n - 10, " (deleted)"))
			fail("unlinked file fd %d: link \"%s\" does not end in \" (deleted)\"",
			     ufd, link);
	}
	if ((pos = lseek(ufd, 0, SEEK_CUR)) != UNL_OFF)
		fail("unlinked file fd %d: offset %ld, want %d", ufd, (long)pos, UNL_OFF);
	if (read(ufd, buf, UNL_CHECK) != UNL_CHECK)
		fail("unlinked file fd %d: read %d bytes at %d: %s", ufd, UNL_CHECK, UNL_OFF,
		     test_strerror(errno));
	for (int i = 0; i < UNL_CHECK; i++)
		if (buf[i] != pattern_byte(UNL_OFF + i, UNL_SEED))
			fail("unlinked file fd %d: byte at %d is 0x%02x, want 0x%02x", ufd,
			     UNL_OFF + i, buf[i], pattern_byte(UNL_OFF + i, UNL_SEED));
}

static void parent_check_fifo(void)
{
	struct stat st, path_st;
	int n;

	if (fstat(fw, &st) || stat(FIFO_NAME, &path_st))
		fail("stat FIFO %s / fd %d: %s", FIFO_NAME, fw, test_strerror(errno));
	if (!S_ISFIFO(st.st_mode) || st.st_ino != path_st.st_ino || st.st_dev != path_st.st_dev)
		fail("FIFO write end fd %d: mode %#o inode %lu, want the FIFO %s (inode %lu)",
		     fw, st.st_mode, (unsigned long)st.st_ino, FIFO_NAME,
		     (unsigned long)path_st.st_ino);
	if ((fcntl(fw, F_GETFL) & O_ACCMODE) != O_WRONLY)
		fail("FIFO write end fd %d: F_GETFL %#o, want O_WRONLY", fw, fcntl(fw, F_GETFL));
	if ((n = fionread(fw, "FIFO write end")) != FIFO_LEN)
		fail("FIFO %s: %d bytes in flight, want %d", FIFO_NAME, n, FIFO_LEN);
}

static void parent_check_eventfd(void)
{
	char line[128];
	unsigned long long v;

	fdinfo_line(efd, "eventfd-count:", line, sizeof(line), "eventfd");
	if (sscanf(line, "eventfd-count: %llx", &v) != 1 || v != EFD_INIT)
		fail("eventfd fd %d: fdinfo says \"%.*s\", want count %d", efd,
		     (int)strcspn(line, "\n"), line, EFD_INIT);
	if (!(fcntl(efd, F_GETFL) & O_NONBLOCK))
		fail("eventfd fd %d lost O_NONBLOCK", efd);
}

static void setup(void)
{
	static unsigned char buf[UNL_SIZE];
	struct termios t;
	char path[64];

	/* The pipe, with bytes the child will read. */
	if (pipe(p))
		fail("pipe: %s", test_strerror(errno));
	fill_pattern(buf, PIPE_LEN, PIPE_SEED);
	write_all(p[1], buf, PIPE_LEN, "pipe");
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sk))
		fail("socketpair: %s", test_strerror(errno));
	/* The FIFO. */
	unlink(FIFO_NAME);
	if (mkfifo(FIFO_NAME, 0600))
		fail("mkfifo %s: %s", FIFO_NAME, test_strerror(errno));
	fr = open(FIFO_NAME, O_RDONLY | O_NONBLOCK);
	fw = open(FIFO_NAME, O_WRONLY);
	if (fr < 0 || fw < 0)
		fail("open %s: %s", FIFO_NAME, test_strerror(errno));
	fill_pattern(buf, FIFO_LEN, FIFO_SEED);
	write_all(fw, buf, FIFO_LEN, "FIFO");
	/* The eventfd. */
	efd = eventfd(EFD_INIT, EFD_NONBLOCK);
	if (efd < 0)
		fail("eventfd: %s", test_strerror(errno));
	/* The memfd, mapped. */
	mfd = memfd_create("ipc_combo", MFD_ALLOW_SEALING);
	if (mfd < 0 || ftruncate(mfd, 2 * PG))
		fail("memfd_create/ftruncate: %s", test_strerror(errno));
	mmem = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	anon = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mmem == MAP_FAILED || anon == MAP_FAILED)
		fail("mmap: %s", test_strerror(errno));
	/* The SysV segment. */
	shmid = shmget(IPC_PRIVATE, 2 * PG, IPC_CREAT | 0600);
	if (shmid < 0)
		fail("shmget: %s", test_strerror(errno));
	shm = shmat(shmid, NULL, 0);
	if (shm == (void *)-1)
		fail("shmat %d: %s", shmid, test_strerror(errno));
	write_shared_page(0, 0);
	if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK))
		fail("F_ADD_SEALS: %s", test_strerror(errno));
	/* The pty pair, raw. */
	ptm = posix_openpt(O_RDWR | O_NOCTTY);
	if (ptm < 0 || grantpt(ptm) || unlockpt(ptm) || ptsname_r(ptm, path, sizeof(path)))
		fail("posix_openpt/grantpt/unlockpt/ptsname: %s", test_strerror(errno));
	pts = open(path, O_RDWR | O_NOCTTY);
	if (pts < 0)
		fail("open %s: %s", path, test_strerror(errno));
	if (tcgetattr(pts, &t))
		fail("tcgetattr: %s", test_strerror(errno));
	cfmakeraw(&t);
	if (tcsetattr(pts, TCSANOW, &t))
		fail("tcsetattr: %s", test_strerror(errno));
	write_all(ptm, TO_SLAVE, strlen(TO_SLAVE), "pty master");
	/* The unlinked file, at its offset. */
	unlink(UNL_NAME);
	ufd = open(UNL_NAME, O_RDWR | O_CREAT | O_TRUNC, 0640);
	if (ufd < 0 || fchmod(ufd, 0640))
		fail("create %s: %s", UNL_NAME, test_strerror(errno));
	fill_pattern(buf, UNL_SIZE, UNL_SEED);
	write_all(ufd, buf, UNL_SIZE, UNL_NAME);
	if (lseek(ufd, UNL_OFF, SEEK_SET) != UNL_OFF || unlink(UNL_NAME) || fstat(ufd, &ufd_was))
		fail("lseek/unlink/fstat %s: %s", UNL_NAME, test_strerror(errno));
	/* The directory the child watches. */
	unlink(CREATED);
	rmdir(WATCHED);
	if (mkdir(WATCHED, 0700))
		fail("mkdir %s: %s", WATCHED, test_strerror(errno));
	/* The test's own control pipes. */
	if (pipe(ctl) || pipe(rep))
		fail("pipe: %s", test_strerror(errno));
}

int main(void)
{
	struct itimerspec its = { { 0, TFD_NS }, { 0, TFD_NS } };
	struct itimerval itv = { { 0, ITIMER_US }, { 0, ITIMER_US } };
	struct epoll_event ev;
	struct sigaction sa;
	char how[128];

	test_init();
	root_pid = getpid();
	signal(SIGPIPE, SIG_IGN);	/* EPIPE, not death, if the other side is gone */
	if (atexit(cleanup))
		fail("atexit");
	setup();

	child_pid = fork();
	if (child_pid < 0)
		fail("fork: %s", test_strerror(errno));
	if (child_pid == 0)
		child_main();
	close(sk[1]);
	close(fr);
	close(pts);
	close(ctl[0]);
	close(rep[1]);

	send_msg(sk[0], MSG_P2C);
	ep = epoll_create1(0);
	if (ep < 0)
		fail("epoll_create1: %s", test_strerror(errno));
	ev.events = EPOLLIN;
	ev.data.u64 = PIPE_TAG;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev))
		fail("epoll_ctl ADD pipe: %s", test_strerror(errno));
	ev.data.u64 = EFD_TAG;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev))
		fail("epoll_ctl ADD eventfd: %s", test_strerror(errno));
	tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL))
		fail("timerfd: %s", test_strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) || setitimer(ITIMER_REAL, &itv, NULL))
		fail("SIGALRM handler / setitimer: %s", test_strerror(errno));

	parent_expect_report("SETUP", 5000);
	if (!wait_fd(sk[0], POLLIN, 2000))
		fail("the child's message did not come before the dump");
	if (!wait_fd(ptm, POLLIN, 2000))
		fail("the child's pty bytes did not reach the master before the dump");
	parent_expect_epoll(1, 1, "before the dump");

	test_ready();
	test_wait_stop();

	/* 1. What the parent holds. */
	describe_child(how, sizeof(how), 0);
	if (strcmp(how, "still running"))
		fail("child (pid %d) %s before the checks", child_pid, how);
	parent_expect_epoll(1, 1, "after the restore (pipe and eventfd both readable)");
	{
		struct stat a, b;
		int n;

		if (fstat(p[0], &a) || fstat(p[1], &b) || a.st_ino != b.st_ino)
			fail("pipe fds %d and %d are no longer one pipe", p[0], p[1]);
		if ((n = fionread(p[0], "pipe read end")) != PIPE_LEN)
			fail("pipe (fd %d): %d bytes in flight, want %d", p[0], n, PIPE_LEN);
	}
	parent_check_eventfd();
	parent_check_timers();
	parent_check_unlinked();
	check_memfd_file();
	check_shm_stat();
	check_shared_page(0, 0);
	check_shared_page(1, 0);
	expect_msg(sk[0], MSG_C2P, 1000, "queued by the child before the dump");
	expect_no_msg(sk[0], "the child's queued message");
	expect_bytes(ptm, TO_MASTER, 1000, "pty master, bytes queued before the dump");
	expect_no_more(ptm, 100, "pty master");
	parent_check_fifo();

	/* 2. The child checks what it holds and writes. */
	go('1');
	parent_expect_report("STEP1", 5000);

	/* 3. The child's writes; the parent's. */
	parent_expect_epoll(0, 1, "after the child read the pipe and wrote the eventfd");
	{
		uint64_t v = read_efd();

		if (v != EFD_CHILD)
			fail("eventfd fd %d read %llu, want the child's %d", efd,
			     (unsigned long long)v, EFD_CHILD);
		expect_efd_empty();
	}
	check_shared_page(1, LATE);
	expect_msg(sk[0], MSG_C2P_2, 1000, "sent by the child after the restore");
	expect_bytes(ptm, "pong", 1000, "pty master, bytes written after the restore");
	write_shared_page(0, LATE);
	write_all(p[1], PIPE2, strlen(PIPE2), "pipe");
	parent_expect_epoll(1, 0, "after a write into the pipe");
	write_all(fw, FIFO2, strlen(FIFO2), "FIFO");
	send_msg(sk[0], MSG_P2C_2);
	write_all(ptm, "ping", 4, "pty master");
	{
		int fd = open(CREATED, O_CREAT | O_WRONLY | O_TRUNC, 0600);

		if (fd < 0)
			fail("create %s: %s", CREATED, test_strerror(errno));
		close(fd);
	}
	if (kill(child_pid, SIGUSR1))
		fail("kill(%d, SIGUSR1): %s", child_pid, test_strerror(errno));

	/* 4. The child checks those. */
	go('2');
	parent_expect_report("DONE", 5000);
	describe_child(how, sizeof(how), 2000);
	if (strcmp(how, "exited with status 0"))
		fail("child (pid %d) %s after reporting DONE", child_pid, how);
	parent_expect_epoll(0, 0, "at the end");
	if (shmdt(shm))
		fail("shmdt: %s", test_strerror(errno));
	pass();
}
