/*
 * netns_veth - a process in a network namespace of its own whose link to
 * the world is a veth, as a container's: eth0 (index 7, MTU 1400, MAC
 * 02:a5:00:00:00:07, up, 10.213.77.2/24) with its peer amv<PID> in its
 * parent's namespace, a route to 10.213.78.0/24 through 10.213.77.1, and
 * sysctls of its own (eth0's rp_filter and IPv6 hop_limit,
 * net.unix.max_dgram_qlen).
 * The test puts the peer in a bridge of its own holding 10.213.77.1 and
 * 10.213.78.1, and listens on 10.213.78.1:7778.
 *
 * After restore (with --external veth[eth0]:OUT@BRIDGE) eth0 must be back
 * as it was, with its address, the route, the sysctls and the loopback
 * up, and the process must reach the test through it, both ways: it
 * listens on 10.213.77.2:7777, connects to 10.213.78.1:7778 (through
 * the gateway) and sends "ping"; the test connects to its listener and
 * sends "hello", then answers "pong". (Amber dumps no socket of another network
 * namespace: the sockets are made after restore.)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtm.h"

static const unsigned char mac[6] = { 0x02, 0xa5, 0x00, 0x00, 0x00, 0x07 };

static void run(const char *cmd)
{
	char full[512];

	snprintf(full, sizeof(full), "PATH=/usr/sbin:/sbin:/usr/bin:/bin; %s", cmd);
	if (system(full))
		fail("%s: failed", cmd);
}

/* The sysctls set to values of their own, and checked after restore. */
static const struct {
	const char *path, *val;
} sysctls[] = {
	{ "/proc/sys/net/ipv4/conf/eth0/rp_filter", "2" },
	{ "/proc/sys/net/ipv6/conf/eth0/hop_limit", "33" },
	{ "/proc/sys/net/unix/max_dgram_qlen", "123" },
};

static void set_sysctls(void)
{
	unsigned i;

	for (i = 0; i < sizeof(sysctls) / sizeof(sysctls[0]); i++) {
		FILE *f = fopen(sysctls[i].path, "w");

		if (!f || fputs(sysctls[i].val, f) < 0 || fclose(f))
			fail("write %s: %s", sysctls[i].path, strerror(errno));
	}
}

static void check_sysctls(void)
{
	char buf[32];
	unsigned i;

	for (i = 0; i < sizeof(sysctls) / sizeof(sysctls[0]); i++) {
		FILE *f = fopen(sysctls[i].path, "r");

		if (!f || !fgets(buf, sizeof(buf), f))
			fail("read %s: %s", sysctls[i].path, strerror(errno));
		fclose(f);
		buf[strcspn(buf, "\n")] = 0;
		if (strcmp(buf, sysctls[i].val))
			fail("%s is %s, want %s", sysctls[i].path, buf, sysctls[i].val);
	}
}

/* setup makes the namespace's links, address and route with ip(8). */
static void setup(void)
{
	char cmd[256];

	run("ip link set lo up");
	snprintf(cmd, sizeof(cmd),
		 "ip link add eth0 index 7 address 02:a5:00:00:00:07 mtu 1400 type veth peer name amv%d netns %d",
		 getpid(), getppid());
	run(cmd);
	run("ip addr add 10.213.77.2/24 dev eth0");
	run("ip link set eth0 up");
	run("ip route add 10.213.78.0/24 via 10.213.77.1 dev eth0 onlink");
	set_sysctls();
}

static void ifreq_get(unsigned long req, struct ifreq *ifr, const char *what)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	memset(ifr, 0, sizeof(*ifr));
	strcpy(ifr->ifr_name, "eth0");
	if (fd < 0 || ioctl(fd, req, ifr))
		fail("eth0 %s: %s", what, strerror(errno));
	close(fd);
}

static void check_link(void)
{
	struct ifreq ifr;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;

	if (if_nametoindex("eth0") != 7)
		fail("eth0 has index %u, want 7", if_nametoindex("eth0"));
	ifreq_get(SIOCGIFMTU, &ifr, "mtu");
	if (ifr.ifr_mtu != 1400)
		fail("eth0 mtu %d, want 1400", ifr.ifr_mtu);
	ifreq_get(SIOCGIFHWADDR, &ifr, "mac");
	if (memcmp(ifr.ifr_hwaddr.sa_data, mac, 6))
		fail("eth0 mac differs");
	ifreq_get(SIOCGIFFLAGS, &ifr, "flags");
	if (!(ifr.ifr_flags & IFF_UP))
		fail("eth0 down");
	ifreq_get(SIOCGIFADDR, &ifr, "address");
	if (sin->sin_addr.s_addr != inet_addr("10.213.77.2"))
		fail("eth0 address %s, want 10.213.77.2", inet_ntoa(sin->sin_addr));
	ifreq_get(SIOCGIFNETMASK, &ifr, "netmask");
	if (sin->sin_addr.s_addr != inet_addr("255.255.255.0"))
		fail("eth0 netmask %s, want /24", inet_ntoa(sin->sin_addr));
}

/* check_route finds 10.213.78.0/24 via 10.213.77.1 in /proc/net/route. */
static void check_route(void)
{
	FILE *f = fopen("/proc/net/route", "r");
	char line[256], dev[32];
	unsigned dst, gw, mask;
	int found = 0;

	if (!f)
		fail("/proc/net/route: %s", strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%31s %x %x %*x %*d %*d %*d %x", dev, &dst, &gw, &mask) == 4 && !strcmp(dev, "eth0") &&
		    dst == inet_addr("10.213.78.0") && gw == inet_addr("10.213.77.1") && mask == inet_addr("255.255.255.0"))
			found = 1;
	fclose(f);
	if (!found)
		fail("no route to 10.213.78.0/24 via 10.213.77.1 on eth0");
}

static void check_state(void)
{
	struct ifreq ifr = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	strcpy(ifr.ifr_name, "lo");
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) || !(ifr.ifr_flags & IFF_UP))
		fail("loopback not up");
	close(fd);
	check_link();
	check_route();
	check_sysctls();
}

static struct sockaddr_in addr(const char *ip, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

	a.sin_addr.s_addr = inet_addr(ip);
	return a;
}

/* talk connects to the test through the gateway: ping, pong. */
static void talk(void)
{
	struct sockaddr_in a = addr("10.213.78.1", 7778);
	char buf[4];
	int s = socket(AF_INET, SOCK_STREAM, 0);

	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)))
		fail("connect to 10.213.78.1:7778: %s", strerror(errno));
	if (write(s, "ping", 4) != 4 || read(s, buf, 4) != 4 || memcmp(buf, "pong", 4))
		fail("ping to the test: no pong (%s)", strerror(errno));
	close(s);
}

/* hear accepts the connection the test made to 10.213.77.2:7777 before
 * it answered pong. */
static void hear(int l)
{
	char buf[5];
	int s = accept(l, NULL, NULL);

	if (s < 0 || read(s, buf, 5) != 5 || memcmp(buf, "hello", 5))
		fail("no hello from the test on 10.213.77.2:7777: %s", strerror(errno));
	close(s);
}

int main(void)
{
	struct sockaddr_in a = addr("10.213.77.2", 7777);
	int l;

	test_init();
	setup();
	check_state();
	test_ready();
	test_wait_stop();
	check_state();
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1))
		fail("listen on 10.213.77.2:7777: %s", strerror(errno));
	talk();
	hear(l);
	pass();
}
