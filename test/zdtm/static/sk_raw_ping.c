/*
 * sk_raw_ping - raw and ping (ICMP datagram) sockets, as CRIU's
 * sock_ip_opts00/01, socket_icmp and socket6_icmp:
 *   - an IPv4 ping socket bound to 127.0.0.1 with echo identifier 4242
 *     and IP_TTL 33;
 *   - an IPv6 ping socket connected to [::1] (port 1, which ping sockets
 *     ignore but getpeername needs);
 *   - an IPv4 raw ICMP socket with an ICMP_FILTER that lets only echo
 *     replies in, IP_NODEFRAG and IP_TOS;
 *   - an IPv6 raw UDP socket bound to ::1 with IPV6_HDRINCL.
 *
 * After SIGTERM: each socket has its type, protocol, addresses and
 * options back, and they still work: the raw socket sends an echo
 * request to 127.0.0.1 and, its filter dropping the request it sees
 * too, first receives the reply; each ping socket sends an echo and
 * gets the reply, with its identifier for the bound one.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/icmp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "zdtm.h"

#define PING_ID 4242
#define RAW_ID 0x7777

static void set_int(int fd, int level, int opt, int v, const char *what)
{
	if (setsockopt(fd, level, opt, &v, sizeof(v)))
		fail("%s: setsockopt: %s", what, test_strerror(errno));
}

static void want_int(int fd, int level, int opt, int want, const char *what)
{
	int v = -1;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, level, opt, &v, &len))
		fail("%s: getsockopt: %s", what, test_strerror(errno));
	if (v != want)
		fail("%s: %d after restore, want %d", what, v, want);
}

static void want_kind(int fd, int type, int proto, const char *what)
{
	want_int(fd, SOL_SOCKET, SO_TYPE, type, what);
	want_int(fd, SOL_SOCKET, SO_PROTOCOL, proto, what);
}

/* A receive timeout only so that a lost reply fails instead of hanging. */
static void recv_timeout(int fd)
{
	struct timeval tv = { .tv_sec = 30 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		fail("SO_RCVTIMEO: %s", test_strerror(errno));
}

static unsigned short csum(const void *p, size_t n)
{
	const unsigned short *w = p;
	unsigned long s = 0;

	for (; n > 1; n -= 2)
		s += *w++;
	s = (s >> 16) + (s & 0xffff);
	s += s >> 16;
	return ~s;
}

/* echo builds an echo request of type with identifier id. */
static void echo(struct icmphdr *h, int type, int id)
{
	memset(h, 0, sizeof(*h));
	h->type = type;
	h->un.echo.id = htons(id);
	h->un.echo.sequence = htons(1);
	h->checksum = csum(h, sizeof(*h));
}

static void check_raw4(int raw4)
{
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct icmp_filter f;
	socklen_t len = sizeof(f);
	struct icmphdr req, *rep;
	char buf[256];
	ssize_t n;

	want_kind(raw4, SOCK_RAW, IPPROTO_ICMP, "raw4");
	want_int(raw4, SOL_IP, IP_NODEFRAG, 1, "raw4 IP_NODEFRAG");
	want_int(raw4, SOL_IP, IP_TOS, 0x10, "raw4 IP_TOS");
	want_int(raw4, SOL_IP, IP_HDRINCL, 0, "raw4 IP_HDRINCL");
	if (getsockopt(raw4, SOL_RAW, ICMP_FILTER, &f, &len) || f.data != ~(1U << ICMP_ECHOREPLY))
		fail("raw4: ICMP_FILTER %#x after restore (%s)", f.data, test_strerror(errno));
	echo(&req, ICMP_ECHO, RAW_ID);
	if (sendto(raw4, &req, sizeof(req), 0, (struct sockaddr *)&lo, sizeof(lo)) != sizeof(req))
		fail("raw4: send: %s", test_strerror(errno));
	n = recv(raw4, buf, sizeof(buf), 0);
	if (n < 20 + (ssize_t)sizeof(*rep))
		fail("raw4: receive: %zd (%s)", n, test_strerror(errno));
	rep = (struct icmphdr *)(buf + (buf[0] & 0xf) * 4);
	if (rep->type != ICMP_ECHOREPLY || ntohs(rep->un.echo.id) != RAW_ID)
		fail("raw4: first packet in is type %d id %#x, want the echo reply to %#x (filter lost?)", rep->type,
		     ntohs(rep->un.echo.id), RAW_ID);
}

static void check_ping4(int ping4)
{
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) }, sa;
	socklen_t len = sizeof(sa);
	struct icmphdr req, rep;

	want_kind(ping4, SOCK_DGRAM, IPPROTO_ICMP, "ping4");
	want_int(ping4, SOL_IP, IP_TTL, 33, "ping4 IP_TTL");
	if (getsockname(ping4, (struct sockaddr *)&sa, &len) || sa.sin_addr.s_addr != htonl(INADDR_LOOPBACK) ||
	    ntohs(sa.sin_port) != PING_ID)
		fail("ping4: bound to %s:%d after restore, want 127.0.0.1:%d", inet_ntoa(sa.sin_addr), ntohs(sa.sin_port),
		     PING_ID);
	echo(&req, ICMP_ECHO, 1);
	if (sendto(ping4, &req, sizeof(req), 0, (struct sockaddr *)&lo, sizeof(lo)) != sizeof(req))
		fail("ping4: send: %s", test_strerror(errno));
	if (recv(ping4, &rep, sizeof(rep), 0) != sizeof(rep))
		fail("ping4: receive: %s", test_strerror(errno));
	if (rep.type != ICMP_ECHOREPLY || ntohs(rep.un.echo.id) != PING_ID)
		fail("ping4: got type %d id %d, want an echo reply to %d", rep.type, ntohs(rep.un.echo.id), PING_ID);
}

static void check_ping6(int ping6)
{
	struct sockaddr_in6 sa;
	socklen_t len = sizeof(sa);
	struct icmphdr req, rep;

	want_kind(ping6, SOCK_DGRAM, IPPROTO_ICMPV6, "ping6");
	if (getpeername(ping6, (struct sockaddr *)&sa, &len) || memcmp(&sa.sin6_addr, &in6addr_loopback, 16))
		fail("ping6: not connected to [::1] after restore: %s", test_strerror(errno));
	echo(&req, 128, 1); /* ICMPV6_ECHO_REQUEST; the kernel sums it */
	req.checksum = 0;
	if (send(ping6, &req, sizeof(req), 0) != sizeof(req))
		fail("ping6: send: %s", test_strerror(errno));
	if (recv(ping6, &rep, sizeof(rep), 0) != sizeof(rep))
		fail("ping6: receive: %s", test_strerror(errno));
	if (rep.type != 129)
		fail("ping6: got type %d, want an echo reply (129)", rep.type);
}

static void check_raw6(int raw6)
{
	struct sockaddr_in6 sa;
	socklen_t len = sizeof(sa);

	want_kind(raw6, SOCK_RAW, IPPROTO_UDP, "raw6");
	want_int(raw6, IPPROTO_IPV6, IPV6_HDRINCL, 1, "raw6 IPV6_HDRINCL");
	if (getsockname(raw6, (struct sockaddr *)&sa, &len) || memcmp(&sa.sin6_addr, &in6addr_loopback, 16))
		fail("raw6: not bound to ::1 after restore: %s", test_strerror(errno));
}

static const char ping_range_path[] = "/proc/sys/net/ipv4/ping_group_range";
static char ping_range_before[64];

/* Give the host its ping group range back when the program ends. */
static void restore_ping_range(void)
{
	int fd = open(ping_range_path, O_WRONLY);

	if (fd >= 0) {
		if (write(fd, ping_range_before, strlen(ping_range_before)) < 0)
			perror(ping_range_path);
		close(fd);
	}
}

/* Let group 0 make ping sockets, unless the range has it already (the
 * default range has none), until the program ends: the restore makes
 * them again in this process. */
static void allow_ping(void)
{
	long lo = 1, hi = 0;
	int fd = open(ping_range_path, O_RDWR);

	if (fd < 0 || read(fd, ping_range_before, sizeof(ping_range_before) - 1) < 0)
		fail("%s: %s", ping_range_path, test_strerror(errno));
	if (sscanf(ping_range_before, "%ld %ld", &lo, &hi) == 2 && lo <= 0 && hi >= 0) {
		close(fd);
		return;
	}
	if (pwrite(fd, "0 0", 3, 0) != 3)
		fail("%s: %s", ping_range_path, test_strerror(errno));
	close(fd);
	atexit(restore_ping_range);
}

int main(void)
{
	struct sockaddr_in lo4 = { .sin_family = AF_INET, .sin_port = htons(PING_ID),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 lo6 = { .sin6_family = AF_INET6, .sin6_port = htons(1), .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct icmp_filter f = { .data = ~(1U << ICMP_ECHOREPLY) };
	int ping4, ping6, raw4, raw6;

	test_init();
	loopback_up(); /* down in a network namespace of its own */
	allow_ping();

	ping4 = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
	ping6 = socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6);
	raw4 = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
	raw6 = socket(AF_INET6, SOCK_RAW, IPPROTO_UDP);
	if (ping4 < 0 || ping6 < 0 || raw4 < 0 || raw6 < 0)
		fail("socket: %s", test_strerror(errno));
	if (bind(ping4, (struct sockaddr *)&lo4, sizeof(lo4)))
		fail("ping4: bind: %s", test_strerror(errno));
	set_int(ping4, SOL_IP, IP_TTL, 33, "ping4 IP_TTL");
	if (connect(ping6, (struct sockaddr *)&lo6, sizeof(lo6)))
		fail("ping6: connect: %s", test_strerror(errno));
	if (setsockopt(raw4, SOL_RAW, ICMP_FILTER, &f, sizeof(f)))
		fail("raw4: ICMP_FILTER: %s", test_strerror(errno));
	set_int(raw4, SOL_IP, IP_NODEFRAG, 1, "raw4 IP_NODEFRAG");
	set_int(raw4, SOL_IP, IP_TOS, 0x10, "raw4 IP_TOS");
	lo6.sin6_port = 0;
	if (bind(raw6, (struct sockaddr *)&lo6, sizeof(lo6)))
		fail("raw6: bind: %s", test_strerror(errno));
	set_int(raw6, IPPROTO_IPV6, IPV6_HDRINCL, 1, "raw6 IPV6_HDRINCL");

	test_ready();
	test_wait_stop();

	recv_timeout(raw4);
	recv_timeout(ping4);
	recv_timeout(ping6);
	check_raw4(raw4);
	check_raw6(raw6);
	check_ping4(ping4);
	check_ping6(ping6);
	pass();
}
