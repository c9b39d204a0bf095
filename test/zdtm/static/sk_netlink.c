/*
 * sk_netlink - netlink sockets, as CRIU's sk-netlink:
 *   - route: NETLINK_ROUTE bound to port id getpid() with the groups
 *     RTMGRP_LINK and RTMGRP_IPV4_IFADDR, and group 33 joined with
 *     NETLINK_ADD_MEMBERSHIP (above the 32 that bind can name);
 *   - server: NETLINK_KOBJECT_UEVENT bound to port id getpid() (port ids
 *     are per protocol);
 *   - client: NETLINK_KOBJECT_UEVENT connected to the server, so bound
 *     by the kernel to a port id of its choice;
 *   - idle: NETLINK_ROUTE, neither bound nor connected.
 *
 * After SIGTERM: each has its port id and groups back; route still
 * talks to the kernel (an RTM_GETLINK dump is answered to its port
 * id); a message client sends reaches server from client's port id;
 * idle is still unbound and of its protocol, and talks to the kernel.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "zdtm.h"

#define GROUPS (RTMGRP_LINK | RTMGRP_IPV4_IFADDR)
#define HIGH_GROUP 33
#define SEQ 0x5eed

static struct sockaddr_nl name_of(int fd, const char *what)
{
	struct sockaddr_nl sa = {};
	socklen_t len = sizeof(sa);

	if (getsockname(fd, (struct sockaddr *)&sa, &len))
		fail("%s: getsockname: %s", what, test_strerror(errno));
	return sa;
}

static void bind_to(int fd, unsigned int portid, unsigned int groups, const char *what)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_pid = portid, .nl_groups = groups };

	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
		fail("%s: bind: %s", what, test_strerror(errno));
}

static void recv_timeout(int fd)
{
	struct timeval tv = { .tv_sec = 30 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		fail("SO_RCVTIMEO: %s", test_strerror(errno));
}

/* ask_links sends an RTM_GETLINK dump request from fd and checks that
 * the first answer is a link, addressed to portid. */
static void ask_links(int fd, unsigned int portid, const char *what)
{
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
	} req = {
		.h = { .nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
		       .nlmsg_seq = SEQ },
		.i = { .ifi_family = AF_UNSPEC },
	};
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	char buf[32768];
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	ssize_t n;

	recv_timeout(fd);
	if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) != sizeof(req))
		fail("%s: send RTM_GETLINK: %s", what, test_strerror(errno));
	n = recv(fd, buf, sizeof(buf), 0);
	if (n < (ssize_t)sizeof(*h))
		fail("%s: no answer to RTM_GETLINK: %s", what, test_strerror(errno));
	if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_seq != SEQ || (portid && h->nlmsg_pid != portid))
		fail("%s: answer of type %d seq %#x to port %u, want a link, seq %#x, port %u", what, h->nlmsg_type,
		     h->nlmsg_seq, h->nlmsg_pid, SEQ, portid);
	/* Read the rest of the dump, so that nothing is left queued. */
	while (h->nlmsg_type != NLMSG_DONE) {
		for (; NLMSG_OK(h, n) && h->nlmsg_type != NLMSG_DONE; h = NLMSG_NEXT(h, n))
			;
		if (NLMSG_OK(h, n))
			break;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < (ssize_t)sizeof(*h))
			fail("%s: RTM_GETLINK dump cut short: %s", what, test_strerror(errno));
		h = (struct nlmsghdr *)buf;
	}
}

static void check_route(int route)
{
	unsigned int groups[4] = {};
	socklen_t len = sizeof(groups);
	struct sockaddr_nl sa = name_of(route, "route");

	if (sa.nl_pid != (unsigned int)getpid() || sa.nl_groups != GROUPS)
		fail("route: port %u groups %#x after restore, want %u and %#x", sa.nl_pid, sa.nl_groups, getpid(), GROUPS);
	if (getsockopt(route, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, groups, &len))
		fail("route: NETLINK_LIST_MEMBERSHIPS: %s", test_strerror(errno));
	if (groups[0] != GROUPS || groups[1] != 1U << (HIGH_GROUP - 33))
		fail("route: groups %#x %#x after restore, want %#x %#x", groups[0], groups[1], GROUPS,
		     1U << (HIGH_GROUP - 33));
	ask_links(route, getpid(), "route");
}

static void check_pair(int server, int client, unsigned int client_port)
{
	struct nlmsghdr msg = { .nlmsg_len = sizeof(msg), .nlmsg_type = 0x1234, .nlmsg_seq = SEQ }, got;
	struct sockaddr_nl from = {};
	socklen_t len = sizeof(from);
	struct sockaddr_nl sa = name_of(client, "client");

	if (name_of(server, "server").nl_pid != (unsigned int)getpid())
		fail("server: port %u after restore, want %u", name_of(server, "server").nl_pid, getpid());
	if (sa.nl_pid != client_port)
		fail("client: port %u after restore, want %u", sa.nl_pid, client_port);
	recv_timeout(server);
	if (send(client, &msg, sizeof(msg), 0) != sizeof(msg))
		fail("client: send to its peer: %s", test_strerror(errno));
	if (recvfrom(server, &got, sizeof(got), 0, (struct sockaddr *)&from, &len) != sizeof(got))
		fail("server: receive: %s", test_strerror(errno));
	if (got.nlmsg_seq != SEQ || from.nl_pid != client_port)
		fail("server: got seq %#x from port %u, want %#x from %u", got.nlmsg_seq, from.nl_pid, SEQ, client_port);
}

int main(void)
{
	struct sockaddr_nl peer = { .nl_family = AF_NETLINK };
	int route, server, client, idle, high = HIGH_GROUP, v = -1;
	socklen_t len = sizeof(v);
	unsigned int client_port;

	test_init();
	route = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	server = socket(AF_NETLINK, SOCK_RAW, NETLINK_KOBJECT_UEVENT);
	client = socket(AF_NETLINK, SOCK_RAW, NETLINK_KOBJECT_UEVENT);
	idle = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	if (route < 0 || server < 0 || client < 0 || idle < 0)
		fail("socket: %s", test_strerror(errno));

	bind_to(route, getpid(), GROUPS, "route");
	if (setsockopt(route, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &high, sizeof(high)))
		fail("route: NETLINK_ADD_MEMBERSHIP %d: %s", high, test_strerror(errno));
	bind_to(server, getpid(), 0, "server");
	peer.nl_pid = getpid();
	if (connect(client, (struct sockaddr *)&peer, sizeof(peer)))
		fail("client: connect: %s", test_strerror(errno));
	client_port = name_of(client, "client").nl_pid;

	test_ready();
	test_wait_stop();

	check_route(route);
	check_pair(server, client, client_port);
	if (name_of(idle, "idle").nl_pid != 0)
		fail("idle: bound to port %u after restore", name_of(idle, "idle").nl_pid);
	if (getsockopt(idle, SOL_SOCKET, SO_PROTOCOL, &v, &len) || v != NETLINK_ROUTE)
		fail("idle: protocol %d after restore, want NETLINK_ROUTE (%s)", v, test_strerror(errno));
	ask_links(idle, 0, "idle");
	pass();
}
