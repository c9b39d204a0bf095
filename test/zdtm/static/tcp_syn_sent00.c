/*
 * tcp_syn_sent00 - a TCP connection still sending its SYN (SYN_SENT),
 * as CRIU's socket-tcp-syn-sent; dumped and restored with
 * --tcp-established.
 *
 * In a network namespace of its own (loopback up), with an nftables rule
 * dropping what reaches port P, it listens on 127.0.0.1:P and connects a
 * non-blocking socket to it: the SYN is dropped, the socket stays in
 * SYN_SENT.
 *
 * After SIGTERM: the socket is still connecting (SO_ERROR 0, no peer
 * yet); the rule goes, the SYN sent again reaches the listener, the
 * connection is accepted, and a byte goes through it with the client's
 * address as the server sees it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
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

int main(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in local, seen;
	socklen_t len = sizeof(a);
	struct pollfd pfd;
	char cmd[256], c = 7;
	int l, s, srv, err;

	test_init();
	setenv("PATH", "/usr/sbin:/sbin:/usr/bin:/bin", 1);
	loopback_up();
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, len) || listen(l, 1) || getsockname(l, (struct sockaddr *)&a, &len))
		fail("listen: %s", strerror(errno));
	run("nft add table ip syn_sent");
	run("nft 'add chain ip syn_sent input { type filter hook input priority 0; }'");
	snprintf(cmd, sizeof(cmd), "nft add rule ip syn_sent input tcp dport %d drop", ntohs(a.sin_port));
	run(cmd);
	s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, len) == 0 || errno != EINPROGRESS)
		fail("connect: want EINPROGRESS: %s", strerror(errno));
	len = sizeof(local);
	if (getsockname(s, (struct sockaddr *)&local, &len))
		fail("getsockname: %s", strerror(errno));
	test_ready();

	test_wait_stop();
	len = sizeof(err);
	if (getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) || err)
		fail("SO_ERROR %d after restore: %s", err, strerror(err));
	run("nft delete table ip syn_sent");
	pfd = (struct pollfd){ .fd = s, .events = POLLOUT };
	if (poll(&pfd, 1, 30000) != 1)
		fail("not connected 30 s after the rule went: %s", strerror(errno));
	len = sizeof(err);
	if (getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) || err)
		fail("connect: %s", strerror(err));
	len = sizeof(seen);
	srv = accept(l, (struct sockaddr *)&seen, &len);
	if (srv < 0)
		fail("accept: %s", strerror(errno));
	if (seen.sin_port != local.sin_port)
		fail("the server sees port %d, the client was bound to %d", ntohs(seen.sin_port), ntohs(local.sin_port));
	if (fcntl(s, F_SETFL, 0) || write(s, &c, 1) != 1 || read(srv, &c, 1) != 1 || c != 7)
		fail("a byte through the connection: %s", strerror(errno));
	pass();
}
