/*
 * zdtm.h - shared helpers for the amber zdtm-style test programs.
 *
 * Protocol (see ../README.md): a test sets up some state, calls test_ready()
 * (prints "ready"), waits for SIGTERM (during which it may be checkpointed
 * and restored), then checks its state and calls pass() or fail().
 */
#ifndef ZDTM_H
#define ZDTM_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Set to 1 by the SIGTERM handler.  Use test_stopped() from C; it is
 * exported only so that inline asm can poll it as a memory operand.
 */
extern volatile sig_atomic_t test_stop_flag;

/* Install the SIGTERM handler (no SA_RESTART) and line-buffer stdout. */
void test_init(void);

/*
 * Optional: also run hook() from the SIGTERM handler, right after the stop
 * flag is set.  The hook must be async-signal-safe.
 */
void test_on_stop(void (*hook)(void));

/* Print "ready" and flush: the driver may checkpoint us from now on. */
void test_ready(void);

/* Non-zero once SIGTERM has been received. */
int test_stopped(void);

/*
 * Sleep in sigsuspend() until SIGTERM has been received.  SIGTERM is blocked
 * while the flag is checked, so a signal arriving between the check and the
 * wait is not lost.  The signal mask is restored on return.
 */
void test_wait_stop(void);

/* Print "PASS" and exit(0). */
void pass(void) __attribute__((noreturn));

/* Print "FAIL: <message>" and exit(1). */
void fail(const char *fmt, ...)
	__attribute__((noreturn, format(printf, 1, 2)));

/*
 * strerror(), but also naming the kernel-internal restart codes 512-516
 * (ERESTARTSYS etc.), which user space only sees if syscall restart was
 * mishandled -- e.g. by a restore that resumed a task inside a syscall.
 */
const char *test_strerror(int err);

/* must() fails the test, naming what and the call's errno, unless ok. */
void must(int ok, const char *what);

/*
 * copy_self copies the running executable to dst (mode 0755): the
 * namespaced tests run themselves from inside the root they pivot into.
 */
void copy_self(const char *dst);

/*
 * stdio_inside makes the file out (appended) stdout and stderr, closes
 * every descriptor from 3 to last, and makes in stdin: a namespaced test,
 * once inside its root, keeps no file of the host's. -1 on failure.
 */
int stdio_inside(const char *out, const char *in, unsigned int last);

/*
 * Bring the loopback of the process's network namespace up: a new
 * namespace's is down. calls fail() on error.
 */
void loopback_up(void);

/*
 * tcp_state returns the TCP state of socket fd (TCP_INFO); tcp_wait_state
 * waits up to ms milliseconds for it to be want. Both call fail() on
 * error, naming the socket by name.
 */
int tcp_state(int fd, const char *name);
void tcp_wait_state(int fd, int want, int ms, const char *name);

/* --- data patterns and checksums -------------------------------------- */

/* A good 64-bit mixing function (splitmix64 finaliser). */
uint64_t zdtm_mix(uint64_t x);

/* Fill buf with a pseudo-random byte pattern fully determined by seed. */
void fill_pattern(void *buf, size_t len, uint64_t seed);

/* Offset of the first byte differing from fill_pattern(seed), or -1. */
long pattern_mismatch(const void *buf, size_t len, uint64_t seed);

/* Expected byte at offset off of fill_pattern(..., seed). */
unsigned char pattern_byte(size_t off, uint64_t seed);

/* fail() with a precise message unless buf holds the pattern for seed. */
void expect_pattern(const void *buf, size_t len, uint64_t seed,
		    const char *what);

/* fail() with a precise message unless buf is all zero bytes. */
void expect_zero(const void *buf, size_t len, const char *what);

/* FNV-1a 64-bit checksum. */
uint64_t checksum(const void *buf, size_t len);

/* --- /proc/self/maps --------------------------------------------------- */

struct vma {
	unsigned long start, end;	/* [start, end) */
	char perms[5];			/* e.g. "rw-p" */
	unsigned long long offset;
	char path[256];			/* "" for anonymous mappings; the
					 * last 255 chars if longer */
};

/*
 * Read /proc/self/maps into a malloc'ed array (*out, caller frees).
 * Returns the number of entries; calls fail() on error.
 */
int read_maps(struct vma **out);

/* --- files of a dead process's /proc directory ------------------------ */

#define PROC_DEAD_LINK 256

/*
 * Files of /proc/PID of a child killed and reaped since they were opened:
 * the directory (O_DIRECTORY), its status file and, if asked, the working
 * directory; and what /proc/self shows of each.
 */
struct proc_dead {
	int pid, dir, status, cwd;
	int lookup_errno;	/* of a lookup in dir once the child is gone */
	char dir_link[PROC_DEAD_LINK], status_link[PROC_DEAD_LINK];
	char cwd_link[PROC_DEAD_LINK];
};

/*
 * Fork a child, open its /proc/PID and /proc/PID/status (as /proc names
 * them: mount a proc of the pid namespace there first), enter /proc/PID
 * too if cwd, kill and reap the child, and check the files as
 * proc_dead_check does.  Calls fail() on error.
 */
void proc_dead_open(struct proc_dead *d, int cwd);

/*
 * fail() unless the files are still those of the dead PID: /proc/self
 * shows the same paths for them, they are on a procfs, nothing can be
 * looked up in the directory (the error it was, once known), reading the status file fails
 * with ESRCH, and getcwd() fails with ENOENT for the working directory.
 */
void proc_dead_check(const struct proc_dead *d);

#endif /* ZDTM_H */
