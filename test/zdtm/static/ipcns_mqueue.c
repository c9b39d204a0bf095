/*
 * ipcns_mqueue - the POSIX message queues of an IPC namespace of the
 * tree's own come back with it: each queue with its name, owner, mode,
 * size limits and its messages, in the order the queue gives them
 * (highest priority first, first in first out within one), and the
 * namespace's fs.mqueue settings, set below what the queues hold.
 *
 * The driver starts it with CLONE_NEWIPC; it refuses to run in its
 * parent's IPC namespace.  No descriptor of a queue stays open: the
 * queues live in the namespace alone.
 *
 *   - "/amber_q1", mode 0640, at most 6 messages of 100 bytes, holding
 *     (sent in this order): priority 1 "a1", 7 "urgent", 1 "a2", 0 an
 *     empty message, 3 100 bytes with zeroes in them.
 *   - "/amber q2" (a space in its name), owner 1234:5678, mode 0604, at
 *     most 3 messages of 12000 bytes (above the default msgsize_max of
 *     8192), empty.
 *   - settings, set after: fs.mqueue.msg_max 4 (below q1's 6),
 *     msgsize_max 9000 (below q2's 12000), queues_max 7.
 *
 * Before the dump it checks each queue's attributes and message count
 * (reading a message would take it); after restore it also takes every
 * message and checks its priority and bytes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define Q1 "/amber_q1"
#define Q2 "/amber q2"

struct message {
	unsigned prio;
	const char *text;
	size_t len;
};

static char binary[100];

/* The messages of q1 in the order a receiver gets them. */
static const struct message q1_out[] = {
	{ 7, "urgent", 6 },
	{ 3, binary, sizeof(binary) },
	{ 1, "a1", 2 },
	{ 1, "a2", 2 },
	{ 0, "", 0 },
};

static const struct {
	const char *path, *value;
} settings[] = {
	{ "/proc/sys/fs/mqueue/msg_max", "4" },
	{ "/proc/sys/fs/mqueue/msgsize_max", "9000" },
	{ "/proc/sys/fs/mqueue/queues_max", "7" },
};

static void write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY);
	ssize_t n = strlen(value);

	if (fd < 0 || write(fd, value, n) != n)
		fail("write %s to %s: %s", value, path, test_strerror(errno));
	close(fd);
}

static void expect_file(const char *path, const char *want)
{
	char buf[64] = "";
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		fail("open %s: %s", path, test_strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		fail("read %s: %s", path, test_strerror(errno));
	buf[strcspn(buf, "\n")] = 0;
	if (strcmp(buf, want))
		fail("%s is \"%s\", want \"%s\"", path, buf, want);
}

static void own_ipc_namespace(void)
{
	char b[64];
	struct stat sa, sb;

	snprintf(b, sizeof(b), "/proc/%d/ns/ipc", getppid());
	if (stat("/proc/self/ns/ipc", &sa) || stat(b, &sb))
		fail("stat the ipc namespaces: %s", test_strerror(errno));
	if (sa.st_ino == sb.st_ino)
		fail("not in an IPC namespace of its own (start it with CLONE_NEWIPC)");
}

static mqd_t make_queue(const char *name, mode_t mode, long maxmsg, long msgsize)
{
	struct mq_attr attr = { .mq_maxmsg = maxmsg, .mq_msgsize = msgsize };
	mqd_t q = mq_open(name, O_CREAT | O_EXCL | O_RDWR, mode, &attr);

	if (q == (mqd_t)-1)
		fail("mq_open %s: %s", name, test_strerror(errno));
	/* Not under the umask. */
	if (fchmod(q, mode))
		fail("fchmod %s: %s", name, test_strerror(errno));
	return q;
}

static void send(mqd_t q, unsigned prio, const char *text, size_t len)
{
	if (mq_send(q, text, len, prio))
		fail("mq_send %zu bytes at priority %u: %s", len, prio, test_strerror(errno));
}

static void setup(void)
{
	mqd_t q;
	unsigned i;

	for (i = 0; i < sizeof(binary); i++)
		binary[i] = i % 3 ? (char)(i * 7) : 0;
	write_file("/proc/sys/fs/mqueue/msgsize_max", "16384");

	q = make_queue(Q1, 0640, 6, 100);
	send(q, 1, "a1", 2);
	send(q, 7, "urgent", 6);
	send(q, 1, "a2", 2);
	send(q, 0, "", 0);
	send(q, 3, binary, sizeof(binary));
	mq_close(q);

	q = make_queue(Q2, 0604, 3, 12000);
	if (fchown(q, 1234, 5678))
		fail("fchown %s: %s", Q2, test_strerror(errno));
	mq_close(q);

	for (i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		write_file(settings[i].path, settings[i].value);
}

/* check_queue fails unless queue name is as made; it returns it open. */
static mqd_t check_queue(const char *name, uid_t uid, gid_t gid, mode_t mode, long maxmsg, long msgsize, long curmsgs)
{
	mqd_t q = mq_open(name, O_RDONLY | O_NONBLOCK);
	struct mq_attr attr;
	struct stat st;

	if (q == (mqd_t)-1)
		fail("mq_open %s: %s", name, test_strerror(errno));
	if (mq_getattr(q, &attr) || fstat(q, &st))
		fail("%s: mq_getattr or fstat: %s", name, test_strerror(errno));
	if (attr.mq_maxmsg != maxmsg || attr.mq_msgsize != msgsize || attr.mq_curmsgs != curmsgs)
		fail("%s: maxmsg %ld msgsize %ld curmsgs %ld; want %ld %ld %ld", name, attr.mq_maxmsg, attr.mq_msgsize,
		     attr.mq_curmsgs, maxmsg, msgsize, curmsgs);
	if (st.st_uid != uid || st.st_gid != gid || (st.st_mode & 07777) != mode)
		fail("%s: owner %u:%u mode %#o; want %u:%u %#o", name, st.st_uid, st.st_gid, st.st_mode & 07777, uid, gid,
		     mode);
	return q;
}

static void check(void)
{
	unsigned i;

	for (i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		expect_file(settings[i].path, settings[i].value);
	mq_close(check_queue(Q1, 0, 0, 0640, 6, 100, 5));
	mq_close(check_queue(Q2, 1234, 5678, 0604, 3, 12000, 0));
}

/* take_all takes q1's messages and fails unless they are as sent. */
static void take_all(void)
{
	mqd_t q = check_queue(Q1, 0, 0, 0640, 6, 100, 5);
	char buf[100];
	unsigned i, prio;
	ssize_t n;

	for (i = 0; i < sizeof(q1_out) / sizeof(q1_out[0]); i++) {
		n = mq_receive(q, buf, sizeof(buf), &prio);
		if (n < 0)
			fail("%s: message %u: mq_receive: %s", Q1, i, test_strerror(errno));
		if (prio != q1_out[i].prio || (size_t)n != q1_out[i].len || memcmp(buf, q1_out[i].text, n))
			fail("%s: message %u: priority %u, %zd bytes; want priority %u, %zu bytes of its own", Q1, i,
			     prio, n, q1_out[i].prio, q1_out[i].len);
	}
	if (mq_receive(q, buf, sizeof(buf), &prio) >= 0 || errno != EAGAIN)
		fail("%s: a message more than sent", Q1);
	mq_close(q);
}

int main(void)
{
	test_init();
	own_ipc_namespace();
	setup();
	check();
	test_ready();
	test_wait_stop();
	check();
	take_all();
	pass();
	return 0;
}
