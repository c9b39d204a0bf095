/* zdtm.c - shared helpers for the amber zdtm-style tests; see zdtm.h. */

/*
 * The avx test builds this file with -mavx2 -mavx512f, which lets gcc use
 * AVX/AVX-512 instructions for ordinary code (struct copies, memset, loops).
 * That must not happen here: the helpers run on CPUs without AVX-512 too,
 * and must not clobber the vector registers that test is checking.
 */
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("no-avx")
#endif
#define _GNU_SOURCE
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

volatile sig_atomic_t test_stop_flag;
static void (*stop_hook)(void);

static void sigterm_handler(int sig)
{
	(void)sig;
	test_stop_flag = 1;
	if (stop_hook)
		stop_hook();
}

void test_init(void)
{
	struct sigaction sa;

	/* One line per write(): the driver polls the file for "ready". */
	setvbuf(stdout, NULL, _IOLBF, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sigterm_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;	/* no SA_RESTART: blocking calls get EINTR */
	if (sigaction(SIGTERM, &sa, NULL))
		fail("sigaction(SIGTERM): %s", test_strerror(errno));
}

void test_on_stop(void (*hook)(void))
{
	stop_hook = hook;
}

void loopback_up(void)
{
	struct ifreq ifr = { .ifr_name = "lo" };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr))
		fail("lo: %s", strerror(errno));
	if (!(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(s, SIOCSIFFLAGS, &ifr))
			fail("lo up: %s", strerror(errno));
	}
	close(s);
}

int tcp_state(int fd, const char *name)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		fail("%s: TCP_INFO: %s", name, strerror(errno));
	return ti.tcpi_state;
}

void tcp_wait_state(int fd, int want, int ms, const char *name)
{
	struct timespec one = { 0, 1000 * 1000 };
	int i;

	for (i = 0; tcp_state(fd, name) != want; i++) {
		if (i == ms)
			fail("%s: state %d, not %d after %d ms", name, tcp_state(fd, name), want, ms);
		nanosleep(&one, NULL);
	}
}

void test_ready(void)
{
	printf("ready\n");
	fflush(stdout);
}

int test_stopped(void)
{
	return test_stop_flag != 0;
}

void test_wait_stop(void)
{
	sigset_t term, old, wait;

	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &term, &old))
		fail("sigprocmask(SIG_BLOCK): %s", test_strerror(errno));

	/* With SIGTERM blocked, the flag cannot change between the check
	 * and sigsuspend(), which atomically unblocks it and sleeps. */
	wait = old;
	sigdelset(&wait, SIGTERM);
	while (!test_stop_flag)
		sigsuspend(&wait);

	if (sigprocmask(SIG_SETMASK, &old, NULL))
		fail("sigprocmask(SIG_SETMASK): %s", test_strerror(errno));
}

void pass(void)
{
	printf("PASS\n");
	fflush(stdout);
	exit(0);
}

void fail(const char *fmt, ...)
{
	va_list ap;

	printf("FAIL: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(1);
}

const char *test_strerror(int err)
{
	switch (err) {
	case 512: return "ERESTARTSYS (512): kernel restart code leaked to user space";
	case 513: return "ERESTARTNOINTR (513): kernel restart code leaked to user space";
	case 514: return "ERESTARTNOHAND (514): kernel restart code leaked to user space";
	case 516: return "ERESTART_RESTARTBLOCK (516): kernel restart code leaked to user space";
	default: return strerror(err);
	}
}

/* --- patterns ---------------------------------------------------------- */

uint64_t zdtm_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Word i of a pattern is zdtm_mix(seed ^ (i * odd constant)), little-endian. */
static uint64_t pattern_word(size_t i, uint64_t seed)
{
	return zdtm_mix(seed ^ ((uint64_t)i * 0xd1342543de82ef95ULL));
}

unsigned char pattern_byte(size_t off, uint64_t seed)
{
	return (unsigned char)(pattern_word(off / 8, seed) >> (8 * (off % 8)));
}

void fill_pattern(void *buf, size_t len, uint64_t seed)
{
	unsigned char *p = buf;
	size_t i, words = len / 8;
	uint64_t w;

	for (i = 0; i < words; i++) {
		w = pattern_word(i, seed);
		memcpy(p + 8 * i, &w, 8);
	}
	for (i = words * 8; i < len; i++)
		p[i] = pattern_byte(i, seed);
}

long pattern_mismatch(const void *buf, size_t len, uint64_t seed)
{
	const unsigned char *p = buf;
	size_t i, words = len / 8;
	uint64_t w;

	for (i = 0; i < words; i++) {
		w = pattern_word(i, seed);
		if (memcmp(p + 8 * i, &w, 8))
			break;
	}
	for (i *= 8; i < len; i++)
		if (p[i] != pattern_byte(i, seed))
			return (long)i;
	return -1;
}

void expect_pattern(const void *buf, size_t len, uint64_t seed,
		    const char *what)
{
	const unsigned char *p = buf;
	long off = pattern_mismatch(buf, len, seed);

	if (off >= 0)
		fail("%s: byte at offset %ld (address %p) of %zu-byte area at %p "
		     "is 0x%02x, expected 0x%02x (pattern seed %#llx)",
		     what, off, (void *)(p + off), len, buf, p[off],
		     pattern_byte(off, seed), (unsigned long long)seed);
}

void expect_zero(const void *buf, size_t len, const char *what)
{
	const unsigned char *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i])
			fail("%s: byte at offset %zu (address %p) of %zu-byte area "
			     "at %p is 0x%02x, expected 0x00",
			     what, i, (void *)(p + i), len, buf, p[i]);
}

uint64_t checksum(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* --- /proc/self/maps ------------------------------------------------------ */

int read_maps(struct vma **out)
{
	FILE *f = fopen("/proc/self/maps", "r");
	struct vma *v = NULL;
	int n = 0, cap = 0;
	char *line = NULL;
	size_t linecap = 0;

	if (!f)
		fail("open /proc/self/maps: %s", test_strerror(errno));
	while (getline(&line, &linecap, f) > 0) {
		struct vma *e;
		int pos = 0;
		char *path;

		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			v = realloc(v, cap * sizeof(*v));
			if (!v)
				fail("out of memory reading /proc/self/maps");
		}
		e = &v[n];
		memset(e, 0, sizeof(*e));
		if (sscanf(line, "%lx-%lx %4s %llx %*x:%*x %*u %n",
			   &e->start, &e->end, e->perms, &e->offset, &pos) < 4 ||
		    pos == 0)
			fail("cannot parse /proc/self/maps line: %s", line);
		path = line + pos;
		path[strcspn(path, "\n")] = '\0';
		/* Keep the end of over-long paths: the file name matters. */
		if (strlen(path) >= sizeof(e->path))
			path += strlen(path) - (sizeof(e->path) - 1);
		snprintf(e->path, sizeof(e->path), "%s", path);
		n++;
	}
	free(line);
	fclose(f);
	*out = v;
	return n;
}

/* --- files of a dead process's /proc directory ------------------------ */

/* self_link reads /proc/self/WHAT (fd/N, cwd) into buf. */
static void self_link(const char *what, char *buf)
{
	char at[64];
	ssize_t n;

	snprintf(at, sizeof(at), "/proc/self/%s", what);
	n = readlink(at, buf, PROC_DEAD_LINK - 1);
	if (n < 0)
		fail("readlink %s: %s", at, test_strerror(errno));
	buf[n] = 0;
}

static void fd_link(int fd, char *buf)
{
	char what[32];

	snprintf(what, sizeof(what), "fd/%d", fd);
	self_link(what, buf);
}

void proc_dead_open(struct proc_dead *d, int cwd)
{
	char path[64];

	memset(d, 0, sizeof(*d));
	d->cwd = -1;
	d->pid = fork();
	if (d->pid < 0)
		fail("fork: %s", test_strerror(errno));
	if (d->pid == 0) {
		pause();
		_exit(0);
	}
	snprintf(path, sizeof(path), "/proc/%d", d->pid);
	d->dir = open(path, O_RDONLY | O_DIRECTORY);
	if (d->dir < 0)
		fail("open %s: %s", path, test_strerror(errno));
	snprintf(path, sizeof(path), "/proc/%d/status", d->pid);
	d->status = open(path, O_RDONLY);
	if (d->status < 0)
		fail("open %s: %s", path, test_strerror(errno));
	if (cwd) {
		d->cwd = 1;
		if (fchdir(d->dir) < 0)
			fail("fchdir /proc/%d: %s", d->pid, test_strerror(errno));
	}
	if (kill(d->pid, SIGKILL) < 0 || waitpid(d->pid, NULL, 0) != d->pid)
		fail("kill and reap %d: %s", d->pid, test_strerror(errno));
	fd_link(d->dir, d->dir_link);
	fd_link(d->status, d->status_link);
	if (cwd)
		self_link("cwd", d->cwd_link);
	proc_dead_check(d);
	if (openat(d->dir, "status", O_RDONLY) < 0)
		d->lookup_errno = errno;
}

/* same_link fails unless /proc/self/WHAT shows want. */
static void same_link(const char *what, const char *got, const char *want)
{
	if (strcmp(got, want))
		fail("%s of dead pid shows \"%s\", was \"%s\"", what, got, want);
}

void proc_dead_check(const struct proc_dead *d)
{
	char link[PROC_DEAD_LINK], buf[64];
	struct statfs fs;
	int fd;

	fd_link(d->dir, link);
	same_link("the /proc directory", link, d->dir_link);
	fd_link(d->status, link);
	same_link("the status file", link, d->status_link);
	if (fstatfs(d->dir, &fs) < 0 || fs.f_type != PROC_SUPER_MAGIC)
		fail("/proc/%d: not on a procfs", d->pid);
	if (fstatfs(d->status, &fs) < 0 || fs.f_type != PROC_SUPER_MAGIC)
		fail("/proc/%d/status: not on a procfs", d->pid);
	fd = openat(d->dir, "status", O_RDONLY);
	if (fd >= 0)
		fail("opened status in the directory of dead pid %d", d->pid);
	if (d->lookup_errno && errno != d->lookup_errno)
		fail("open status in the directory of dead pid %d: %s, was %s", d->pid, test_strerror(errno),
		     test_strerror(d->lookup_errno));
	if (read(d->status, buf, sizeof(buf)) >= 0 || errno != ESRCH)
		fail("read /proc/%d/status of a dead pid: %s, want ESRCH", d->pid, test_strerror(errno));
	if (d->cwd < 0)
		return;
	self_link("cwd", link);
	same_link("the working directory", link, d->cwd_link);
	if (getcwd(buf, sizeof(buf)) != NULL || errno != ENOENT)
		fail("getcwd in /proc/%d of a dead pid: %s, want ENOENT", d->pid, test_strerror(errno));
}

void must(int ok, const char *what)
{
	if (!ok)
		fail("%s: %s", what, test_strerror(errno));
}

void copy_self(const char *dst)
{
	static char buf[1 << 16];
	int in = open("/proc/self/exe", O_RDONLY), out;
	ssize_t n;

	must(in >= 0, "open /proc/self/exe");
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0755);
	must(out >= 0, dst);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		must(write(out, buf, n) == n, dst);
	must(n == 0, "read /proc/self/exe");
	close(in);
	close(out);
}

int stdio_inside(const char *out, const char *in, unsigned int last)
{
	int fd = open(out, O_WRONLY | O_APPEND);

	if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
		return -1;
	close(fd);
	syscall(SYS_close_range, 3, last, 0);
	fd = open(in, O_RDONLY);
	if (fd < 0 || dup2(fd, 0) < 0)
		return -1;
	close(fd);
	return 0;
}
