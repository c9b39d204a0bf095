/*
 * tcp_reset00 - TCP connections reset while the process holds them, as
 * CRIU's socket-tcp-reseted; dumped and restored with --tcp-established.
 *
 * In a network namespace of its own (loopback up):
 *  - "aborted": a socket whose peer closed with SO_LINGER 0; the reset
 *    came with 3 bytes it had not read (TCP_CLOSE);
 *  - "rejected": CRIU's case. Its client writes 3 bytes to the server;
 *    an nftables rule rejects with a reset what reaches the server's
 *    port, and the server writes 5 bytes: the client's acknowledgement
 *    is rejected, the client is reset with the 5 bytes unread, and the
 *    server, its bytes never acknowledged, stays established (until its
 *    retransmission meets the closed client). The rule goes.
 * Each reset socket's pending error is read before the dump.
 *
 * After SIGTERM: the aborted socket and the rejected client are in
 * TCP_CLOSE with their peer's address, read their bytes, then
 * end-of-file, and a write fails with EPIPE. The rejected server knows
 * its peer is gone at once (TCP_CLOSE: the first segment of the
 * restored connection met the closed client), reads its 3 bytes, and a
 * write fails.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtm.h"

static void run(const char *cmd)
{
	if (system(cmd))
		fail("%s: failed", cmd);
}

/* pair connects a new client to listener l: out[0] the client, out[1]
 * the server's end. */
static void pair(int l, struct sockaddr_in *a, int out[2])
{
	out[0] = socket(AF_INET, SOCK_STREAM, 0);
	if (out[0] < 0 || connect(out[0], (struct sockaddr *)a, sizeof(*a)))
		fail("connect: %s", test_strerror(errno));
	out[1] = accept(l, NULL, NULL);
	if (out[1] < 0)
		fail("accept: %s", test_strerror(errno));
}

static void send_all(int fd, const char *s, const char *name)
{
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		fail("%s: write: %s", name, test_strerror(errno));
}

/* take_error reads the error a reset left pending. */
static void take_error(int fd, const char *name)
{
	int err;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) || err != ECONNRESET)
		fail("%s: SO_ERROR %d, want ECONNRESET", name, err);
}

static void peer_of(int fd, struct sockaddr_in *sa)
{
	socklen_t len = sizeof(*sa);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERNAME, sa, &len))
		fail("SO_PEERNAME: %s", test_strerror(errno));
}

/* check_ended checks a reset socket: closed, its peer kept, its unread
 * bytes, then end-of-file, and EPIPE. */
static void check_ended(int fd, const struct sockaddr_in *peer, const char *unread, const char *name)
{
	struct sockaddr_in now;
	char b[16];
	ssize_t r;

	if (tcp_state(fd, name) != TCP_CLOSE)
		fail("%s: state %d after restore, not TCP_CLOSE", name, tcp_state(fd, name));
	peer_of(fd, &now);
	if (now.sin_port != peer->sin_port || now.sin_addr.s_addr != peer->sin_addr.s_addr)
		fail("%s: its peer's port is %d after restore, %d before", name, ntohs(now.sin_port), ntohs(peer->sin_port));
	r = read(fd, b, sizeof(b));
	if (r != (ssize_t)strlen(unread) || memcmp(b, unread, r))
		fail("%s: read %zd bytes (%s), want \"%s\"", name, r, r < 0 ? test_strerror(errno) : "", unread);
	r = read(fd, b, sizeof(b));
	if (r != 0)
		fail("%s: read %zd (%s) after its bytes, want end-of-file", name, r, r < 0 ? test_strerror(errno) : "data");
	errno = 0;
	if (write(fd, b, 1) != -1 || errno != EPIPE)
		fail("%s: write did not fail with EPIPE (%s)", name, test_strerror(errno));
}

int main(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in aborted_peer, client_peer;
	struct linger abort_now = { .l_onoff = 1, .l_linger = 0 };
	socklen_t len = sizeof(a);
	int l, aborted[2], rejected[2];
	char cmd[256], b[16];
	ssize_t r;

	test_init();
	setenv("PATH", "/usr/sbin:/sbin:/usr/bin:/bin", 1);
	signal(SIGPIPE, SIG_IGN);
	loopback_up();
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, len) || listen(l, 2) || getsockname(l, (struct sockaddr *)&a, &len))
		fail("listen: %s", test_strerror(errno));

	pair(l, &a, aborted);
	send_all(aborted[0], "abc", "aborted client");
	if (setsockopt(aborted[0], SOL_SOCKET, SO_LINGER, &abort_now, sizeof(abort_now)))
		fail("SO_LINGER: %s", test_strerror(errno));
	tcp_wait_state(aborted[1], TCP_ESTABLISHED, 5000, "aborted");
	peer_of(aborted[1], &aborted_peer);
	close(aborted[0]);
	tcp_wait_state(aborted[1], TCP_CLOSE, 5000, "aborted");
	take_error(aborted[1], "aborted");

	pair(l, &a, rejected);
	send_all(rejected[0], "asd", "rejected client");
	peer_of(rejected[0], &client_peer);
	run("nft add table ip reset00");
	run("nft 'add chain ip reset00 input { type filter hook input priority 0; }'");
	snprintf(cmd, sizeof(cmd), "nft add rule ip reset00 input tcp dport %d reject with tcp reset", ntohs(a.sin_port));
	run(cmd);
	send_all(rejected[1], "asdas", "rejected server");
	tcp_wait_state(rejected[0], TCP_CLOSE, 5000, "rejected client");
	run("nft delete table ip reset00");
	take_error(rejected[0], "rejected client");

	test_ready();
	test_wait_stop();

	check_ended(aborted[1], &aborted_peer, "abc", "aborted");
	check_ended(rejected[0], &client_peer, "asdas", "rejected client");
	if (tcp_state(rejected[1], "rejected server") != TCP_CLOSE)
		fail("rejected server: state %d after restore, not TCP_CLOSE: it did not learn its peer is gone", tcp_state(rejected[1], "rejected server"));
	r = read(rejected[1], b, sizeof(b));
	if (r != 3 || memcmp(b, "asd", 3))
		fail("rejected server: read %zd bytes (%s), want \"asd\"", r, r < 0 ? test_strerror(errno) : "");
	if (write(rejected[1], b, 1) != -1)
		fail("rejected server: a write went through to a peer that is gone");
	pass();
}
