/*
 * sk_unix_scm - descriptors in flight (SCM_RIGHTS) in the queue of a
 * seqpacket socketpair, the process holding both ends, and in a datagram
 * socketpair whose sender is closed.
 *
 * Queued on q[0], in order: "pipe" with the read end of pipe P (5 bytes
 * in it; the process keeps only the write end); "plain" with none; "file"
 * with a file of the cwd opened O_RDWR at offset 3 (then closed here);
 * "sock" with r[0], one end of socketpair R, with "inner" queued on it
 * (the process keeps r[1]); "both" with both ends of pipe P2, which only
 * the message holds. Queued on d[0], whose sender d[1] is closed: "null"
 * with /dev/null opened O_WRONLY.
 *
 * After SIGTERM the messages come in order with their bytes and
 * descriptor counts; P's end reads the 5 bytes, then what the kept write
 * end writes; the file is O_RDWR at offset 3 and reads its bytes there;
 * r[0] has "inner" queued, and R carries data both ways; what P2's write
 * end writes its read end reads; /dev/null is O_WRONLY and takes writes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtm.h"

static void send_fds(int sk, const char *msg, const int *fds, int n)
{
	char ctl[CMSG_SPACE(sizeof(int) * 4)] = { 0 };
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = strlen(msg) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (n > 0) {
		mh.msg_control = ctl;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	}
	if (sendmsg(sk, &mh, 0) != (ssize_t)strlen(msg))
		fail("send \"%s\": %s", msg, test_strerror(errno));
}

/* Receive the next message on sk: it must be want, with n descriptors. */
static void recv_fds(int sk, const char *want, int *fds, int n)
{
	char ctl[CMSG_SPACE(sizeof(int) * 8)], buf[64];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl) };
	int got = 0;

	ssize_t len = recvmsg(sk, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (len < 0)
		fail("receive \"%s\": %s", want, test_strerror(errno));
	buf[len] = 0;
	if (strcmp(buf, want))
		fail("received \"%s\", want \"%s\"", buf, want);
	if (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC))
		fail("\"%s\": truncated (flags %#x)", want, mh.msg_flags);
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			fail("\"%s\": control message %d/%d", want, c->cmsg_level, c->cmsg_type);
		int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (got + k > n)
			fail("\"%s\": more than %d descriptors", want, n);
		memcpy(fds + got, CMSG_DATA(c), sizeof(int) * k);
		got += k;
	}
	if (got != n)
		fail("\"%s\" carries %d descriptors, want %d", want, got, n);
}

static void expect_read(int fd, const char *want, const char *what)
{
	char buf[64];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0)
		fail("read %s: %s", what, test_strerror(errno));
	buf[n] = 0;
	if (strcmp(buf, want))
		fail("%s reads \"%s\", want \"%s\"", what, buf, want);
}

static void xwrite(int fd, const char *s, const char *what)
{
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		fail("write %s: %s", what, test_strerror(errno));
}

int main(void)
{
	int q[2], r[2], d[2], p[2], p2[2];

	test_init();
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, q) || socketpair(AF_UNIX, SOCK_STREAM, 0, r) ||
	    socketpair(AF_UNIX, SOCK_DGRAM, 0, d) || pipe(p) || pipe(p2))
		fail("socketpair, pipe: %s", test_strerror(errno));

	xwrite(p[1], "data1", "pipe P");
	send_fds(q[1], "pipe", &p[0], 1);
	close(p[0]);
	send_fds(q[1], "plain", NULL, 0);

	int f = open("scm_file", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (f < 0)
		fail("open scm_file: %s", test_strerror(errno));
	xwrite(f, "0123456789", "scm_file");
	if (lseek(f, 3, SEEK_SET) != 3)
		fail("lseek: %s", test_strerror(errno));
	send_fds(q[1], "file", &f, 1);
	close(f);

	xwrite(r[1], "inner", "socket R");
	send_fds(q[1], "sock", &r[0], 1);
	close(r[0]);
	send_fds(q[1], "both", p2, 2);
	close(p2[0]);
	close(p2[1]);

	int null = open("/dev/null", O_WRONLY);
	if (null < 0)
		fail("open /dev/null: %s", test_strerror(errno));
	send_fds(d[1], "null", &null, 1);
	close(null);
	close(d[1]);

	test_ready();
	test_wait_stop();

	int got[2];
	recv_fds(q[0], "pipe", got, 1);
	expect_read(got[0], "data1", "pipe P's end in flight");
	xwrite(p[1], "data2", "pipe P");
	expect_read(got[0], "data2", "pipe P's end in flight");
	close(got[0]);

	recv_fds(q[0], "plain", got, 0);

	recv_fds(q[0], "file", got, 1);
	if ((fcntl(got[0], F_GETFL) & O_ACCMODE) != O_RDWR)
		fail("the file in flight is not O_RDWR");
	if (lseek(got[0], 0, SEEK_CUR) != 3)
		fail("the file in flight is at offset %ld, want 3", (long)lseek(got[0], 0, SEEK_CUR));
	expect_read(got[0], "3456789", "the file in flight");
	close(got[0]);

	recv_fds(q[0], "sock", got, 1);
	expect_read(got[0], "inner", "socket R's end in flight");
	xwrite(r[1], "there", "socket R");
	expect_read(got[0], "there", "socket R's end in flight");
	xwrite(got[0], "back", "socket R's end in flight");
	expect_read(r[1], "back", "socket R");
	close(got[0]);

	recv_fds(q[0], "both", got, 2);
	xwrite(got[1], "p2", "pipe P2");
	expect_read(got[0], "p2", "pipe P2");
	close(got[0]);
	close(got[1]);

	char c;
	if (recv(q[0], &c, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN)
		fail("more queued on q[0] than was sent");

	recv_fds(d[0], "null", got, 1);
	if ((fcntl(got[0], F_GETFL) & O_ACCMODE) != O_WRONLY)
		fail("/dev/null in flight is not O_WRONLY");
	xwrite(got[0], "x", "/dev/null in flight");
	pass();
}
