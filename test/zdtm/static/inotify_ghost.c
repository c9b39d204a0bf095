/*
 * inotify_ghost - an inotify watch on an unlinked file the process still
 * holds open (CRIU's inotify00).
 *
 * The test makes directory d and file d/f (fd g, O_RDWR, 10 bytes), then
 * an inotify instance (made before g is opened, so that it comes first in
 * the descriptor table) watching d (IN_CREATE|IN_DELETE, wd 1) and d/f
 * (IN_MODIFY|IN_CLOSE_WRITE|IN_ATTRIB, wd 2); d/f is unlinked and the
 * events that queues are read away.  After restore: nothing is queued;
 * fd g is still unlinked with its 10 bytes; a write through g gives
 * IN_MODIFY on wd 2, a chmod through g IN_ATTRIB on wd 2, closing g
 * IN_CLOSE_WRITE on wd 2 (then at most the end of that watch); d/f does
 * not exist and nothing was created in d.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

static int ify;

/* next_event returns the next queued event's mask and wd, or 0 if none. */
static unsigned next_event(int *wd)
{
	static char buf[16 * (sizeof(struct inotify_event) + NAME_MAX + 1)]
		__attribute__((aligned(__alignof__(struct inotify_event))));
	static ssize_t len, off;
	struct pollfd p = { .fd = ify, .events = POLLIN };

	if (off >= len) {
		if (poll(&p, 1, 0) <= 0)
			return 0;
		len = read(ify, buf, sizeof(buf));
		off = 0;
		if (len < (ssize_t)sizeof(struct inotify_event))
			fail("read events: %s", test_strerror(errno));
	}
	struct inotify_event *ev = (struct inotify_event *)(buf + off);
	off += sizeof(*ev) + ev->len;
	*wd = ev->wd;
	return ev->mask;
}

static void drain(void)
{
	int wd;
	while (next_event(&wd))
		;
}

static void expect(unsigned mask, const char *what)
{
	int wd = 0;
	unsigned got = next_event(&wd);
	if (got != mask || wd != 2)
		fail("%s: event %#x on wd %d, want %#x on wd 2", what, got, wd, mask);
}

int main(void)
{
	int g;
	struct stat st;

	test_init();
	ify = inotify_init1(IN_NONBLOCK);
	if (ify < 0 || mkdir("d", 0755))
		fail("inotify_init1 or mkdir: %s", test_strerror(errno));
	g = open("d/f", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (g < 0 || write(g, "0123456789", 10) != 10)
		fail("create d/f: %s", test_strerror(errno));
	if (inotify_add_watch(ify, "d", IN_CREATE | IN_DELETE) != 1 ||
	    inotify_add_watch(ify, "d/f", IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB) != 2)
		fail("inotify_add_watch: %s (or not wd 1 and 2)", test_strerror(errno));
	if (unlink("d/f"))
		fail("unlink: %s", test_strerror(errno));
	drain();

	test_ready();
	test_wait_stop();

	int wd;
	unsigned m = next_event(&wd);
	if (m)
		fail("event %#x on wd %d queued after restore", m, wd);
	if (fstat(g, &st) || st.st_nlink != 0 || st.st_size != 10)
		fail("fd g: nlink %lu size %ld, want an unlinked file of 10 bytes", (unsigned long)st.st_nlink,
		     (long)st.st_size);
	if (write(g, "x", 1) != 1)
		fail("write: %s", test_strerror(errno));
	expect(IN_MODIFY, "write through g");
	if (fchmod(g, 0640))
		fail("fchmod: %s", test_strerror(errno));
	expect(IN_ATTRIB, "fchmod of g");
	if (close(g))
		fail("close: %s", test_strerror(errno));
	expect(IN_CLOSE_WRITE, "close of g");
	if (access("d/f", F_OK) == 0)
		fail("d/f exists again");
	/* The last close of the unlinked file ends its watch. */
	while ((m = next_event(&wd)))
		if (wd != 2 || (m & ~(IN_IGNORED | IN_DELETE_SELF)))
			fail("unexpected event %#x on wd %d", m, wd);
	pass();
}
