/*
 * eventfd00 - eventfd counters and modes survive C/R.
 *
 * Three eventfds: a plain one holding 42; one in EFD_SEMAPHORE mode,
 * O_NONBLOCK, holding 3; and a non-blocking one holding a counter above
 * 32 bits (eventfd2 takes only 32).  After restore: the plain one reads 42
 * once and is then empty; the semaphore one reads 1 three times and then
 * EAGAIN; the big one reads its whole counter.  The status flags (F_GETFL)
 * and the fd numbers are unchanged.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "zdtm.h"

#define BIG 0x123456789abULL

static uint64_t read_count(int fd, const char *what)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		fail("read %s eventfd (fd %d): %s", what, fd, test_strerror(errno));
	return v;
}

static void expect_empty(int fd, const char *what)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, 0) != 0)
		fail("%s eventfd (fd %d) still readable after its counter was read",
		     what, fd);
}

static void expect_flags(int fd, int want, const char *what)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || (fl & (O_ACCMODE | O_NONBLOCK)) != want)
		fail("%s eventfd (fd %d): F_GETFL %#o, want %#o", what, fd, fl, want);
}

int main(void)
{
	int plain, sem, big, i;
	uint64_t v;

	test_init();
	plain = eventfd(42, 0);
	sem = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
	big = eventfd(0, EFD_NONBLOCK);
	if (plain < 0 || sem < 0 || big < 0)
		fail("eventfd: %s", test_strerror(errno));
	v = BIG;
	if (write(big, &v, sizeof(v)) != sizeof(v))
		fail("write big eventfd: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	expect_flags(plain, O_RDWR, "plain");
	expect_flags(sem, O_RDWR | O_NONBLOCK, "semaphore");
	expect_flags(big, O_RDWR | O_NONBLOCK, "big");
	if ((v = read_count(plain, "plain")) != 42)
		fail("plain eventfd (fd %d) read %llu, want 42", plain,
		     (unsigned long long)v);
	expect_empty(plain, "plain");
	for (i = 0; i < 3; i++)
		if ((v = read_count(sem, "semaphore")) != 1)
			fail("semaphore eventfd (fd %d) read %d gave %llu, want 1 "
			     "(EFD_SEMAPHORE lost?)", sem, i + 1,
			     (unsigned long long)v);
	if (read(sem, &v, sizeof(v)) != -1 || errno != EAGAIN)
		fail("semaphore eventfd (fd %d) not empty after 3 reads, or "
		     "blocking: %s", sem, test_strerror(errno));
	if ((v = read_count(big, "big")) != BIG)
		fail("big eventfd (fd %d) read %#llx, want %#llx", big,
		     (unsigned long long)v, BIG);
	pass();
}
