/*
 * netns_lo - a process started in a network namespace of its own, whose
 * only link is its loopback, brought up, keeps such a namespace: after
 * restore it is still in one of its own (not its parent's), with the
 * loopback as its only link, up, and a TCP connection over 127.0.0.1
 * works (CRIU's netdev and netns images, the simple case).
 *
 * A file "emptyns" in its directory says the dump and the restore were
 * made with --empty-ns net: the namespace is then a new one left as it
 * comes, its loopback down.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

static short lo_flags(void)
{
	struct ifreq ifr = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	strcpy(ifr.ifr_name, "lo");
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr))
		fail("SIOCGIFFLAGS lo: %s", strerror(errno));
	close(fd);
	return ifr.ifr_flags;
}

static void lo_up(void)
{
	struct ifreq ifr = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	strcpy(ifr.ifr_name, "lo");
	ifr.ifr_flags = lo_flags() | IFF_UP;
	if (fd < 0 || ioctl(fd, SIOCSIFFLAGS, &ifr))
		fail("SIOCSIFFLAGS lo: %s", strerror(errno));
	close(fd);
}

static void own_namespace(void)
{
	struct stat a, b;
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/ns/net", getppid());
	if (stat("/proc/self/ns/net", &a) || stat(path, &b))
		fail("stat net namespaces: %s", strerror(errno));
	if (a.st_ino == b.st_ino)
		fail("in its parent's network namespace, want one of its own");
}

static void only_loopback(void)
{
	struct if_nameindex *ifs = if_nameindex(), *i;

	if (!ifs)
		fail("if_nameindex: %s", strerror(errno));
	for (i = ifs; i->if_index; i++)
		if (strcmp(i->if_name, "lo"))
			fail("link %s in the namespace, want lo only", i->if_name);
	if_freenameindex(ifs);
}

/* connect_loopback connects a TCP client to a listener on 127.0.0.1. */
static void connect_loopback(void)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t len = sizeof(addr);
	int l, c, a;

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof(addr)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&addr, &len))
		fail("listen on 127.0.0.1: %s", strerror(errno));
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&addr, sizeof(addr)))
		fail("connect to 127.0.0.1: %s", strerror(errno));
	a = accept(l, NULL, NULL);
	if (a < 0 || write(c, "x", 1) != 1)
		fail("accept, write: %s", strerror(errno));
	close(a);
	close(c);
	close(l);
}

static void check(void)
{
	int empty = access("emptyns", F_OK) == 0;

	own_namespace();
	only_loopback();
	if (empty) {
		if (lo_flags() & IFF_UP)
			fail("loopback up in a namespace left empty");
		return;
	}
	if (!(lo_flags() & IFF_UP))
		fail("loopback down");
	connect_loopback();
}

int main(void)
{
	test_init();
	own_namespace();
	lo_up();
	check();
	test_ready();
	test_wait_stop();
	check();
	pass();
}
