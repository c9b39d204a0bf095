/*
 * fanotify_marks - a fanotify group keeps its flags and its marks across
 * C/R (CRIU's fanotify00).
 *
 * The test makes file "f" in its scratch directory (fd w, O_WRONLY), then
 * a group (FAN_CLASS_NOTIF | FAN_NONBLOCK, events opened O_RDONLY |
 * O_LARGEFILE) with an inode mark on f (FAN_MODIFY | FAN_CLOSE_WRITE) and
 * a mount mark on the mount of the scratch directory (FAN_OPEN, and
 * FAN_ACCESS ignored with FAN_MARK_IGNORED_SURV_MODIFY), and keeps the
 * "fanotify" lines of its fdinfo.  After restore: those lines are the
 * same; with the queue drained, a write through w gives FAN_MODIFY for f
 * (the event's descriptor is f's inode) and opening "g" in the directory
 * FAN_OPEN for g, from the mount mark.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

static int fa;

static void fdinfo_lines(char *out, size_t size)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fa);
	FILE *f = fopen(path, "r");
	if (!f)
		fail("open %s: %s", path, test_strerror(errno));
	out[0] = 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "fanotify ", 9) && strlen(out) + strlen(line) < size)
			strcat(out, line);
	fclose(f);
}

static void drain(void)
{
	char buf[4096];
	ssize_t n;
	while ((n = read(fa, buf, sizeof(buf))) > 0)
		for (char *p = buf; p < buf + n; p += ((struct fanotify_event_metadata *)p)->event_len)
			if (((struct fanotify_event_metadata *)p)->fd >= 0)
				close(((struct fanotify_event_metadata *)p)->fd);
	if (errno != EAGAIN)
		fail("drain: %s", test_strerror(errno));
}

/* expect reads events until one with mask bit want on the inode of path. */
static void expect(unsigned long long want, const char *path, const char *what)
{
	struct fanotify_event_metadata buf[64];
	struct stat want_st, st;
	if (stat(path, &want_st))
		fail("stat %s: %s", path, test_strerror(errno));
	ssize_t n = read(fa, buf, sizeof(buf));
	if (n <= 0)
		fail("%s: no event (%s)", what, test_strerror(errno));
	int found = 0;
	for (char *p = (char *)buf; p < (char *)buf + n; p += ((struct fanotify_event_metadata *)p)->event_len) {
		struct fanotify_event_metadata *m = (void *)p;
		if (m->fd >= 0 && !fstat(m->fd, &st) && st.st_ino == want_st.st_ino && (m->mask & want))
			found = 1;
		if (m->fd >= 0)
			close(m->fd);
	}
	if (!found)
		fail("%s: no event %#llx for %s", what, want, path);
}

int main(void)
{
	static char before[4096], after[4096];
	int w;

	test_init();
	w = open("f", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	fa = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY | O_LARGEFILE);
	if (w < 0 || fa < 0)
		fail("open or fanotify_init: %s", test_strerror(errno));
	if (fanotify_mark(fa, FAN_MARK_ADD, FAN_MODIFY | FAN_CLOSE_WRITE, AT_FDCWD, "f") ||
	    fanotify_mark(fa, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN, AT_FDCWD, ".") ||
	    fanotify_mark(fa, FAN_MARK_ADD | FAN_MARK_MOUNT | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY,
			  FAN_ACCESS, AT_FDCWD, "."))
		fail("fanotify_mark: %s", test_strerror(errno));
	fdinfo_lines(before, sizeof(before));
	if (!strstr(before, "mnt_id:") || !strstr(before, "ino:"))
		fail("fdinfo shows no marks:\n%s", before);

	test_ready();
	test_wait_stop();

	fdinfo_lines(after, sizeof(after));
	if (strcmp(before, after))
		fail("fdinfo differs:\n%s\nwas:\n%s", after, before);
	drain();
	if (write(w, "x", 1) != 1)
		fail("write: %s", test_strerror(errno));
	expect(FAN_MODIFY, "f", "write to f");
	int g = open("g", O_RDONLY | O_CREAT, 0600);
	if (g < 0)
		fail("open g: %s", test_strerror(errno));
	expect(FAN_OPEN, "g", "open of g");
	pass();
}
