/*
 * inotify00 - an inotify instance keeps its watches, with their masks and
 * watch descriptors, across C/R.
 *
 * In the scratch directory the test makes directories a, b and c and
 * watches a (IN_CREATE), b (IN_DELETE) and c (IN_CREATE), then removes
 * the watch of b: the watches are wd 1 and 3, with 2 freed.  After
 * restore: nothing is queued; creating a file in c gives one IN_CREATE
 * event with c's wd and the file's name, creating one in a gives a's; the
 * kernel goes on numbering from 4 (a new watch on b gets wd 4).
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

static void expect_create(int wd, const char *dir, const char *name)
{
	char buf[sizeof(struct inotify_event) + NAME_MAX + 1]
		__attribute__((aligned(__alignof__(struct inotify_event))));
	struct inotify_event *ev = (struct inotify_event *)buf;
	char path[PATH_MAX];
	struct pollfd p = { .fd = ify, .events = POLLIN };
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	if (fd < 0)
		fail("create %s: %s", path, test_strerror(errno));
	close(fd);
	if (poll(&p, 1, 2000) != 1)
		fail("no inotify event on fd %d for creating %s", ify, path);
	n = read(ify, buf, sizeof(buf));
	if (n < (ssize_t)sizeof(*ev))
		fail("read inotify fd %d: %s", ify, test_strerror(errno));
	if (ev->wd != wd || !(ev->mask & IN_CREATE) || strcmp(ev->name, name))
		fail("creating %s gave event wd %d mask %#x name \"%s\", want wd %d "
		     "IN_CREATE \"%s\"", path, ev->wd, ev->mask,
		     ev->len ? ev->name : "", wd, name);
	if (n != (ssize_t)(sizeof(*ev) + ev->len))
		fail("creating %s queued more than one event", path);
}

int main(void)
{
	int wa, wb, wc, wb2;
	struct pollfd p;

	test_init();
	if ((mkdir("a", 0700) && errno != EEXIST) ||
	    (mkdir("b", 0700) && errno != EEXIST) ||
	    (mkdir("c", 0700) && errno != EEXIST))
		fail("mkdir: %s", test_strerror(errno));
	ify = inotify_init1(IN_NONBLOCK);
	if (ify < 0)
		fail("inotify_init1: %s", test_strerror(errno));
	wa = inotify_add_watch(ify, "a", IN_CREATE);
	wb = inotify_add_watch(ify, "b", IN_DELETE);
	wc = inotify_add_watch(ify, "c", IN_CREATE | IN_ONLYDIR);
	if (wa != 1 || wb != 2 || wc != 3)
		fail("watches got wds %d %d %d, want 1 2 3", wa, wb, wc);
	if (inotify_rm_watch(ify, wb))
		fail("inotify_rm_watch: %s", test_strerror(errno));
	{
		/* Drop the IN_IGNORED of b's removal: nothing queued at dump. */
		char buf[256];

		if (read(ify, buf, sizeof(buf)) <= 0)
			fail("no IN_IGNORED after removing wd %d", wb);
	}

	test_ready();
	test_wait_stop();

	if (!(fcntl(ify, F_GETFL) & O_NONBLOCK))
		fail("inotify fd %d lost O_NONBLOCK", ify);
	p.fd = ify;
	p.events = POLLIN;
	if (poll(&p, 1, 0) != 0)
		fail("inotify fd %d has events queued after restore", ify);
	expect_create(wc, "c", "file-in-c");
	expect_create(wa, "a", "file-in-a");
	wb2 = inotify_add_watch(ify, "b", IN_DELETE);
	if (wb2 != 4)
		fail("a new watch got wd %d, want 4", wb2);
	pass();
}
