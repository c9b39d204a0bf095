/*
 * sk_raw_l2tp - raw sockets of protocol IPPROTO_L2TP (115), as among the
 * raw sockets of every protocol of CRIU's socket-raw: an IPv4 one bound to
 * 127.0.0.1 and an IPv6 one bound to ::1.  Their addresses are inet ones,
 * though a library may take them for L2TP/IP ones by their protocol.
 *
 * After SIGTERM: each socket has its family, type, protocol and bound
 * address back.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtm.h"

#define L2TP 115 /* IPPROTO_L2TP */

static int sockopt(int sk, int opt)
{
	int v = -1;
	socklen_t len = sizeof(v);

	if (getsockopt(sk, SOL_SOCKET, opt, &v, &len))
		fail("getsockopt %d on fd %d: %s", opt, sk, test_strerror(errno));
	return v;
}

static void check(int sk, int family, const char *what)
{
	if (sockopt(sk, SO_DOMAIN) != family || sockopt(sk, SO_TYPE) != SOCK_RAW || sockopt(sk, SO_PROTOCOL) != L2TP)
		fail("%s: domain %d type %d protocol %d", what, sockopt(sk, SO_DOMAIN), sockopt(sk, SO_TYPE),
		     sockopt(sk, SO_PROTOCOL));
}

int main(void)
{
	struct sockaddr_in a4 = { .sin_family = AF_INET };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct sockaddr_storage got;
	socklen_t len;
	int s4, s6;

	test_init();
	a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s4 = socket(AF_INET, SOCK_RAW, L2TP);
	s6 = socket(AF_INET6, SOCK_RAW, L2TP);
	if (s4 < 0 || s6 < 0)
		fail("socket(SOCK_RAW, IPPROTO_L2TP): %s", test_strerror(errno));
	if (bind(s4, (struct sockaddr *)&a4, sizeof(a4)) || bind(s6, (struct sockaddr *)&a6, sizeof(a6)))
		fail("bind: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	check(s4, AF_INET, "IPv4 socket");
	check(s6, AF_INET6, "IPv6 socket");
	len = sizeof(got);
	if (getsockname(s4, (struct sockaddr *)&got, &len) ||
	    ((struct sockaddr_in *)&got)->sin_addr.s_addr != htonl(INADDR_LOOPBACK))
		fail("IPv4 socket is not bound to 127.0.0.1 after restore");
	len = sizeof(got);
	if (getsockname(s6, (struct sockaddr *)&got, &len) ||
	    memcmp(&((struct sockaddr_in6 *)&got)->sin6_addr, &in6addr_loopback, sizeof(in6addr_loopback)))
		fail("IPv6 socket is not bound to ::1 after restore");
	pass();
}
