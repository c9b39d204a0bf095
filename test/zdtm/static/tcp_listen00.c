/*
 * tcp_listen00 - listening TCP sockets and UDP sockets, bound and
 * connected, over IPv4 and IPv6.
 *
 * l4: TCP on 127.0.0.1, a port the kernel picks, SO_REUSEADDR, backlog
 * 7.  l6: TCP on [::], IPV6_V6ONLY, port P the kernel picks, backlog 3;
 * l4any: TCP on 0.0.0.0:P beside it (possible only because of
 * IPV6_V6ONLY).  bound: TCP bound to 127.0.0.1, not listening.  fresh:
 * TCP, neither bound nor connected.  u1: UDP bound to 127.0.0.1 with
 * SO_BROADCAST, IP_TOS 0x10 and a 200,000-byte receive buffer.  u2: UDP
 * on ::ffff:127.0.0.1 (an IPv6 socket), connected to u1.
 *
 * After SIGTERM: each socket has its address, state and options back
 * (SO_ACCEPTCONN, the listen backlog from TCP_INFO, SO_REUSEADDR,
 * IPV6_V6ONLY, SO_BROADCAST, IP_TOS, SO_RCVBUF); each listener accepts a
 * connection; a datagram goes from u2 to u1, which sees u2's address,
 * and back; fresh can still be bound.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtm.h"

struct sock {
	const char *name;
	int fd;
	struct sockaddr_storage addr;
	socklen_t len;
};

static int get_int(int fd, int level, int opt, const char *what)
{
	int v;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, level, opt, &v, &len))
		fail("getsockopt %s: %s", what, test_strerror(errno));
	return v;
}

static void set_int(int fd, int level, int opt, int v, const char *what)
{
	if (setsockopt(fd, level, opt, &v, sizeof(v)))
		fail("setsockopt %s: %s", what, test_strerror(errno));
}

static struct sockaddr_storage in4(const char *ip, int port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *a = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	inet_pton(AF_INET, ip, &a->sin_addr);
	return ss;
}

static struct sockaddr_storage in6(const char *ip, int port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	a->sin6_family = AF_INET6;
	a->sin6_port = htons(port);
	inet_pton(AF_INET6, ip, &a->sin6_addr);
	return ss;
}

static socklen_t len_of(struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static int port_of(struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)ss)->sin6_port);
}

/* open_sock makes s of family and type, bound to at (if given), and
 * records its address. */
static void open_sock(struct sock *s, int family, int type, struct sockaddr_storage *at)
{
	s->fd = socket(family, type, 0);
	if (s->fd < 0)
		fail("%s: socket: %s", s->name, test_strerror(errno));
	if (at && bind(s->fd, (struct sockaddr *)at, len_of(at)))
		fail("%s: bind: %s", s->name, test_strerror(errno));
	s->len = sizeof(s->addr);
	if (getsockname(s->fd, (struct sockaddr *)&s->addr, &s->len))
		fail("%s: getsockname: %s", s->name, test_strerror(errno));
}

static void same_name(struct sock *s)
{
	struct sockaddr_storage got;
	socklen_t len = sizeof(got);

	if (getsockname(s->fd, (struct sockaddr *)&got, &len))
		fail("%s: getsockname: %s", s->name, test_strerror(errno));
	if (len != s->len || memcmp(&got, &s->addr, len))
		fail("%s: bound elsewhere after restore (port %d, was %d)", s->name, port_of(&got), port_of(&s->addr));
}

static void listening(struct sock *s, int backlog)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	struct sockaddr_storage to = s->addr;
	int c, a;

	if (!get_int(s->fd, SOL_SOCKET, SO_ACCEPTCONN, "SO_ACCEPTCONN"))
		fail("%s: not listening", s->name);
	if (getsockopt(s->fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		fail("%s: TCP_INFO: %s", s->name, test_strerror(errno));
	if ((int)ti.tcpi_sacked != backlog)
		fail("%s: backlog %u, want %d", s->name, ti.tcpi_sacked, backlog);
	if (to.ss_family == AF_INET6 && !memcmp(&((struct sockaddr_in6 *)&to)->sin6_addr, &in6addr_any, 16))
		((struct sockaddr_in6 *)&to)->sin6_addr = in6addr_loopback;
	if (to.ss_family == AF_INET && ((struct sockaddr_in *)&to)->sin_addr.s_addr == INADDR_ANY)
		((struct sockaddr_in *)&to)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c = socket(to.ss_family, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&to, len_of(&to)))
		fail("%s: connect: %s", s->name, test_strerror(errno));
	a = accept(s->fd, NULL, NULL);
	if (a < 0 || write(c, "x", 1) != 1)
		fail("%s: accept: %s", s->name, test_strerror(errno));
	close(a);
	close(c);
}

int main(void)
{
	struct sock l4 = { "l4" }, l6 = { "l6" }, l4any = { "l4any" }, bound = { "bound" }, fresh = { "fresh" };
	struct sock u1 = { "u1" }, u2 = { "u2" };
	struct sockaddr_storage at, from;
	socklen_t len;
	char buf[16];

	test_init();
	at = in4("127.0.0.1", 0);
	l4.fd = socket(AF_INET, SOCK_STREAM, 0);
	if (l4.fd < 0)
		fail("socket: %s", test_strerror(errno));
	set_int(l4.fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
	if (bind(l4.fd, (struct sockaddr *)&at, len_of(&at)) || listen(l4.fd, 7))
		fail("l4: bind/listen: %s", test_strerror(errno));
	l4.len = sizeof(l4.addr);
	getsockname(l4.fd, (struct sockaddr *)&l4.addr, &l4.len);

	l6.fd = socket(AF_INET6, SOCK_STREAM, 0);
	set_int(l6.fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
	at = in6("::", 0);
	if (bind(l6.fd, (struct sockaddr *)&at, len_of(&at)) || listen(l6.fd, 3))
		fail("l6: bind/listen: %s", test_strerror(errno));
	l6.len = sizeof(l6.addr);
	getsockname(l6.fd, (struct sockaddr *)&l6.addr, &l6.len);
	at = in4("0.0.0.0", port_of(&l6.addr));
	open_sock(&l4any, AF_INET, SOCK_STREAM, &at);
	if (listen(l4any.fd, 2))
		fail("l4any: listen: %s", test_strerror(errno));

	at = in4("127.0.0.1", 0);
	open_sock(&bound, AF_INET, SOCK_STREAM, &at);
	open_sock(&fresh, AF_INET, SOCK_STREAM, NULL);

	open_sock(&u1, AF_INET, SOCK_DGRAM, &at);
	set_int(u1.fd, SOL_SOCKET, SO_BROADCAST, 1, "SO_BROADCAST");
	set_int(u1.fd, IPPROTO_IP, IP_TOS, 0x10, "IP_TOS");
	set_int(u1.fd, SOL_SOCKET, SO_RCVBUF, 100000, "SO_RCVBUF");
	at = in6("::ffff:127.0.0.1", 0);
	open_sock(&u2, AF_INET6, SOCK_DGRAM, &at);
	at = in6("::ffff:127.0.0.1", port_of(&u1.addr));
	if (connect(u2.fd, (struct sockaddr *)&at, len_of(&at)))
		fail("u2: connect: %s", test_strerror(errno));
	int rcvbuf = get_int(u1.fd, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF");

	test_ready();
	test_wait_stop();

	struct sock *all[] = { &l4, &l6, &l4any, &bound, &fresh, &u1, &u2 };
	for (size_t i = 0; i < sizeof(all) / sizeof(*all); i++)
		same_name(all[i]);
	if (!get_int(l4.fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR"))
		fail("l4: SO_REUSEADDR lost");
	if (get_int(l4any.fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR"))
		fail("l4any: SO_REUSEADDR appeared");
	if (get_int(l6.fd, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT"))
		fail("l6: SO_REUSEPORT appeared");
	if (!get_int(l6.fd, IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY"))
		fail("l6: IPV6_V6ONLY lost");
	if (get_int(u2.fd, IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY"))
		fail("u2: IPV6_V6ONLY appeared");
	if (get_int(bound.fd, SOL_SOCKET, SO_ACCEPTCONN, "SO_ACCEPTCONN"))
		fail("bound: listening");
	if (!get_int(u1.fd, SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST"))
		fail("u1: SO_BROADCAST lost");
	if (get_int(u1.fd, IPPROTO_IP, IP_TOS, "IP_TOS") != 0x10)
		fail("u1: IP_TOS lost");
	if (get_int(u1.fd, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF") != rcvbuf)
		fail("u1: SO_RCVBUF %d, want %d", get_int(u1.fd, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF"), rcvbuf);
	listening(&l4, 7);
	listening(&l6, 3);
	listening(&l4any, 2);

	if (send(u2.fd, "ping", 4, 0) != 4)
		fail("u2: send: %s", test_strerror(errno));
	len = sizeof(from);
	if (recvfrom(u1.fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len) != 4 || memcmp(buf, "ping", 4))
		fail("u1: no datagram from u2: %s", test_strerror(errno));
	if (port_of(&from) != port_of(&u2.addr))
		fail("u1: datagram from port %d, u2 is on %d", port_of(&from), port_of(&u2.addr));
	if (sendto(u1.fd, "pong", 4, 0, (struct sockaddr *)&from, len) != 4)
		fail("u1: sendto: %s", test_strerror(errno));
	if (recv(u2.fd, buf, sizeof(buf), 0) != 4 || memcmp(buf, "pong", 4))
		fail("u2: no datagram from u1: %s", test_strerror(errno));

	at = in4("127.0.0.1", 0);
	if (bind(fresh.fd, (struct sockaddr *)&at, len_of(&at)))
		fail("fresh: bind after restore: %s", test_strerror(errno));
	pass();
}
