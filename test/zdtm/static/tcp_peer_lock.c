/*
 * tcp_peer_lock - established TCP connections whose peer is outside the
 * dumped tree (the test), as CRIU's net_lock_socket_*: the peer goes on
 * sending while the tree is dumped and gone, and nothing it sent may be
 * lost or answered with a reset.
 *
 * It listens on 127.0.0.1 and ::1, writes "PORT4 PORT6" into the file
 * "ports" of its directory, says "ready", accepts one connection on each
 * and says "accepted".  The test sends "A" on each, dumps the program,
 * sends "B" while it is gone (the network lock must drop it, so that
 * the test's kernel sends it again later), restores it and sends "C".
 *
 * After SIGTERM: "ABC" comes out of each connection, in order, within a
 * minute (time for the retransmission of "B").
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "zdtm.h"

/* listen_on listens on the loopback address of family on a port the
 * kernel picks, and returns the socket; *port gets the port. */
static int listen_on(int family, int *port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int s = socket(family, SOCK_STREAM, 0);

	if (s < 0)
		fail("socket: %s", strerror(errno));
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		len = sizeof(*a);
	}
	if (bind(s, (struct sockaddr *)&ss, len) || listen(s, 1))
		fail("bind/listen: %s", strerror(errno));
	if (getsockname(s, (struct sockaddr *)&ss, &len))
		fail("getsockname: %s", strerror(errno));
	*port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port :
					  ((struct sockaddr_in6 *)&ss)->sin6_port);
	return s;
}

static void expect_abc(int s, const char *name)
{
	struct timeval tv = { .tv_sec = 60 };
	char buf[4] = { 0 };
	ssize_t n;

	if (setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		fail("%s: SO_RCVTIMEO: %s", name, strerror(errno));
	n = recv(s, buf, 3, MSG_WAITALL);
	if (n < 0)
		fail("%s: recv: %s", name, strerror(errno));
	if (n != 3 || memcmp(buf, "ABC", 3))
		fail("%s: got %zd bytes \"%s\", want \"ABC\"", name, n, buf);
}

int main(void)
{
	int l4, l6, c4, c6, p4, p6;
	FILE *f;

	test_init();
	l4 = listen_on(AF_INET, &p4);
	l6 = listen_on(AF_INET6, &p6);
	f = fopen("ports", "w");
	if (!f || fprintf(f, "%d %d\n", p4, p6) < 0 || fclose(f))
		fail("write ports: %s", strerror(errno));
	test_ready();
	c4 = accept(l4, NULL, NULL);
	c6 = accept(l6, NULL, NULL);
	if (c4 < 0 || c6 < 0)
		fail("accept: %s", strerror(errno));
	printf("accepted\n");
	fflush(stdout);

	test_wait_stop();
	expect_abc(c4, "IPv4");
	expect_abc(c6, "IPv6");
	pass();
}
