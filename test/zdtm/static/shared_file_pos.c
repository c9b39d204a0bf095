/*
 * shared_file_pos - three processes sharing one open file description, so
 * one file offset.
 *
 * The parent P opens shared_file_pos.data (O_RDWR, no O_APPEND), writes a
 * 16-byte header and forks C1 and C2, which inherit the same open file.  A
 * token goes round a ring of pipes P -> C1 -> C2 -> P; whoever holds it
 * checks the shared offset (lseek(fd, 0, SEEK_CUR)) is where the last
 * writer -- another process -- left it, writes one 16-byte record
 * "rec NN by X", checks the offset moved by 16 and passes the token on.
 * One round (records 0-2) is done before `ready`, so the offset is 64 at
 * the checkpoint; the children then sleep in read() on their token pipe.
 *
 * After SIGTERM (P only) three more rounds follow (records 3-11), then a
 * "done" token goes round: each child checks the final offset (208), that
 * F_GETFL is still O_RDWR without O_APPEND and, if kcmp() is available,
 * that its fd is the very same file description as its parent's; then it
 * exits 0 (or reports on stderr, prefixed "shared_file_pos C<n> (pid P)",
 * and exits 1, which breaks the ring).  P checks the final offset, the
 * whole file content through a fresh descriptor, and both exit statuses.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define FILENAME	"shared_file_pos.data"
#define HEADER		"shared_file_pos\n"	/* 16 bytes */
#define HDR		16
#define REC		16
#define ROUNDS_BEFORE	1
#define ROUNDS_AFTER	3
#define NREC		(3 * (ROUNDS_BEFORE + ROUNDS_AFTER))
#define TIMEOUT_S	5

static int fd;			/* the shared open file */
static int ring[3][2];		/* 0: P -> C1, 1: C1 -> C2, 2: C2 -> P */
static int me;			/* 0: P, 1: C1, 2: C2 */
static const char *name[3] = { "P", "C1", "C2" };
static pid_t child[3];		/* [1], [2] */
static char err[512];

static void child_fail(const char *fmt, ...)
	__attribute__((noreturn, format(printf, 1, 2)));
static void child_fail(const char *fmt, ...)
{
	char line[700];
	va_list ap;
	int n;

	n = snprintf(line, sizeof(line), "shared_file_pos %s (pid %d): ",
		     name[me], getpid());
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(2, line, n) < 0)
		_exit(1);
	_exit(1);
}

/* Fail in whichever process we are. */
#define die(...) do { if (me) child_fail(__VA_ARGS__); else fail(__VA_ARGS__); } while (0)

static void record(int i, char *buf)
{
	char text[REC + 1];

	snprintf(text, sizeof(text), "rec %02d by %-2s", i, name[i % 3]);
	snprintf(buf, REC + 1, "%-15.15s\n", text);
}

static void check_offset(off_t want, const char *when)
{
	off_t off = lseek(fd, 0, SEEK_CUR);

	if (off != want)
		die("%s: shared offset is %lld, expected %lld", when,
		    (long long)off, (long long)want);
}

/* Our turn: write record i at the shared offset. */
static void write_record(int i)
{
	char buf[REC + 1], when[64];

	snprintf(when, sizeof(when), "before writing record %d", i);
	check_offset(HDR + (off_t)i * REC, when);
	record(i, buf);
	if (write(fd, buf, REC) != REC)
		die("write record %d: %s", i, test_strerror(errno));
	snprintf(when, sizeof(when), "after writing record %d", i);
	check_offset(HDR + (off_t)(i + 1) * REC, when);
}

/* Read the token from the previous process in the ring. */
static char get_token(void)
{
	int in = ring[(me + 2) % 3][0];
	struct pollfd p = { .fd = in, .events = POLLIN };
	ssize_t n;
	char t;

	for (;;) {
		/* P bounds its wait; the children wait as long as it takes. */
		if (me == 0) {
			int r = poll(&p, 1, TIMEOUT_S * 1000);

			if (r < 0 && errno == EINTR)
				continue;
			if (r == 0)
				die("no token back from C2 within %d s", TIMEOUT_S);
		}
		n = read(in, &t, 1);
		if (n == 1)
			return t;
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			die("token pipe from %s: EOF (it failed or is gone)",
			    name[(me + 2) % 3]);
		die("read token from %s: %s", name[(me + 2) % 3],
		    test_strerror(errno));
	}
}

static void put_token(char t)
{
	if (write(ring[me][1], &t, 1) != 1)
		die("pass token to %s: %s", name[(me + 1) % 3],
		    test_strerror(errno));
}

static void check_shared(const char *when)
{
	int fl = fcntl(fd, F_GETFL);
	long r;

	if (fl < 0 || (fl & O_ACCMODE) != O_RDWR || (fl & O_APPEND))
		die("%s: F_GETFL of fd %d is %#x, expected O_RDWR without O_APPEND",
		    when, fd, fl);
	if (me == 0)
		return;
	r = syscall(SYS_kcmp, getpid(), getppid(), KCMP_FILE, fd, fd);
	if (r > 0)
		die("%s: kcmp: fd %d is not the same open file as the parent's fd %d",
		    when, fd, fd);
	/* r < 0: no kcmp; the offsets still tell. */
}

static void child_main(void) __attribute__((noreturn));
static void child_main(void)
{
	int k, rounds = 0;
	char t;

	for (k = 0; k < 3; k++) {
		if (k != me)
			close(ring[k][1]);
		if (k != (me + 2) % 3)
			close(ring[k][0]);
	}
	check_shared("setup");
	for (;;) {
		t = get_token();
		if (t == 'D')
			break;
		if (t != 'T')
			child_fail("unexpected token 0x%02x", (unsigned char)t);
		write_record(3 * rounds + me);
		rounds++;
		put_token('T');
	}
	if (rounds != ROUNDS_BEFORE + ROUNDS_AFTER)
		child_fail("had %d turns, expected %d", rounds,
			   ROUNDS_BEFORE + ROUNDS_AFTER);
	check_offset(HDR + NREC * REC, "at the end");
	check_shared("at the end");
	put_token('D');
	_exit(0);
}

static void round_trip(int round)
{
	char t;

	write_record(3 * round);
	put_token('T');
	t = get_token();
	if (t != 'T')
		fail("round %d: token 0x%02x came back, expected 'T'", round,
		     (unsigned char)t);
}

static void reap_children(void)
{
	time_t deadline = time(NULL) + TIMEOUT_S;
	int k, status;
	pid_t w;

	for (k = 1; k <= 2; k++) {
		for (;;) {
			w = waitpid(child[k], &status, WNOHANG);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				fail("waitpid %s: %s", name[k], test_strerror(errno));
			if (w == child[k])
				break;
			if (time(NULL) >= deadline) {
				kill(child[1], SIGKILL);
				kill(child[2], SIGKILL);
				fail("%s (pid %d) did not exit within %d s%s%s", name[k],
				     child[k], TIMEOUT_S, err[0] ? "; " : "", err);
			}
			usleep(10 * 1000);
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			size_t n = strlen(err);

			snprintf(err + n, sizeof(err) - n, "%s%s (pid %d) ended with "
				 "status %#x", n ? "; " : "", name[k], child[k], status);
		}
	}
}

int main(void)
{
	char want[HDR + NREC * REC + 1], got[sizeof(want) + 16];
	int k, round, rfd;
	ssize_t n;
	char t;

	test_init();
	fd = open(FILENAME, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		fail("open %s: %s", FILENAME, test_strerror(errno));
	if (write(fd, HEADER, HDR) != HDR)
		fail("write header: %s", test_strerror(errno));
	for (k = 0; k < 3; k++)
		if (pipe(ring[k]))
			fail("pipe: %s", test_strerror(errno));
	for (k = 1; k <= 2; k++) {
		child[k] = fork();
		if (child[k] < 0)
			fail("fork: %s", test_strerror(errno));
		if (child[k] == 0) {
			me = k;
			child_main();
		}
	}
	close(ring[0][0]);
	close(ring[1][0]);
	close(ring[1][1]);
	close(ring[2][1]);

	for (round = 0; round < ROUNDS_BEFORE; round++)
		round_trip(round);
	check_offset(HDR + 3 * ROUNDS_BEFORE * REC, "before ready");

	test_ready();
	test_wait_stop();

	check_shared("after SIGTERM");
	for (; round < ROUNDS_BEFORE + ROUNDS_AFTER; round++)
		round_trip(round);
	put_token('D');
	t = get_token();
	if (t != 'D')
		fail("token 0x%02x came back, expected 'D'", (unsigned char)t);
	reap_children();
	if (err[0])
		fail("%s", err);
	check_offset(HDR + NREC * REC, "at the end");

	strcpy(want, HEADER);
	for (k = 0; k < NREC; k++)
		record(k, want + HDR + k * REC);
	rfd = open(FILENAME, O_RDONLY);
	if (rfd < 0)
		fail("reopen %s: %s", FILENAME, test_strerror(errno));
	n = pread(rfd, got, sizeof(got) - 1, 0);
	if (n < 0)
		fail("read %s: %s", FILENAME, test_strerror(errno));
	got[n] = '\0';
	if (n != (ssize_t)strlen(want) || memcmp(got, want, n)) {
		for (k = 0; k < n && got[k] == want[k]; k++)
			;
		fail("%s: %zd bytes, expected %zu; first difference at byte %d "
		     "(record %d): \"%.15s\" instead of \"%.15s\"", FILENAME, n,
		     strlen(want), k, (k - HDR) / REC, got + (k / REC) * REC,
		     want + (k / REC) * REC);
	}
	pass();
}
