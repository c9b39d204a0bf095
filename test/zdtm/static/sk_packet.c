/*
 * sk_packet - packet (AF_PACKET) sockets, as CRIU's packet_sock and
 * packet_sock_spkt:
 *   - rx: SOCK_DGRAM for ethertype 0x88b5 (local experimental), bound
 *     to lo, with PACKET_AUXDATA, PACKET_ORIGDEV, a fanout group of its
 *     own (id 77, hash, rollover) and lo's promiscuous mode asked twice;
 *   - tx: SOCK_RAW, protocol 0, bound to lo: it only sends;
 *   - ring: SOCK_RAW with TPACKET_V3, PACKET_RESERVE 8 and a receive
 *     ring of 2 blocks (not mapped: a mapped ring is refused);
 *   - opts: SOCK_RAW with PACKET_VNET_HDR, PACKET_LOSS, PACKET_TIMESTAMP
 *     and SO_PRIORITY;
 *   - spkt: an old SOCK_PACKET socket bound to "lo", and one unbound.
 *
 * After SIGTERM: each has its kind, interface and settings back, lo
 * stays promiscuous when the membership is dropped once, the ring is there (it can be
 * mapped at its size, not larger), and a frame tx sends on lo after
 * the restore reaches rx.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "zdtm.h"

#define ETH_P_TEST 0x88b5
#define FANOUT_ID 77
#define FANOUT (FANOUT_ID | (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_ROLLOVER) << 16)
#define RESERVE 8
#define TSTAMP 0x10 /* SOF_TIMESTAMPING_SOFTWARE, any value is kept */
#define PAYLOAD "amber packet after restore"

static int lo;

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
		fail("%s: %#x after restore, want %#x", what, v, want);
}

static void bind_lo(int fd, int proto, const char *what)
{
	struct sockaddr_ll sa = { .sll_family = AF_PACKET, .sll_protocol = htons(proto), .sll_ifindex = lo };

	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
		fail("%s: bind to lo: %s", what, test_strerror(errno));
}

static void want_bound(int fd, int ifindex, int proto, const char *what)
{
	struct sockaddr_ll sa;
	socklen_t len = sizeof(sa);

	if (getsockname(fd, (struct sockaddr *)&sa, &len))
		fail("%s: getsockname: %s", what, test_strerror(errno));
	if (sa.sll_family != AF_PACKET || sa.sll_ifindex != ifindex || ntohs(sa.sll_protocol) != proto)
		fail("%s: bound to interface %d protocol %#x after restore, want %d and %#x", what, sa.sll_ifindex,
		     ntohs(sa.sll_protocol), ifindex, proto);
}

static int membership(int fd, int opt)
{
	struct packet_mreq mr = { .mr_ifindex = lo, .mr_type = PACKET_MR_PROMISC };

	return setsockopt(fd, SOL_PACKET, opt, &mr, sizeof(mr));
}

/* lo_promisc reads lo's flags where the kernel's own promiscuity shows
 * (SIOCGIFFLAGS shows only what a user set). */
static int lo_promisc(void)
{
	char buf[32] = "";
	unsigned long flags;
	int fd = open("/sys/class/net/lo/flags", O_RDONLY);

	if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0 || sscanf(buf, "%lx", &flags) != 1)
		fail("/sys/class/net/lo/flags: %s", test_strerror(errno));
	close(fd);
	return !!(flags & IFF_PROMISC);
}

static void spkt_bind(int fd)
{
	struct sockaddr sa = { .sa_family = AF_PACKET };

	strcpy(sa.sa_data, "lo");
	if (bind(fd, &sa, sizeof(sa)))
		fail("spkt: bind to lo: %s", test_strerror(errno));
}

static void want_spkt(int fd, const char *dev, const char *what)
{
	struct sockaddr sa = {};
	socklen_t len = sizeof(sa);

	if (getsockname(fd, &sa, &len))
		fail("%s: getsockname: %s", what, test_strerror(errno));
	if (sa.sa_family != AF_PACKET || strcmp(sa.sa_data, dev))
		fail("%s: bound to \"%.14s\" after restore, want \"%s\"", what, sa.sa_data, dev);
}

static struct tpacket_req3 ring_req(void)
{
	struct tpacket_req3 r = {
		.tp_block_size = 4096, .tp_block_nr = 2, .tp_frame_size = 2048, .tp_frame_nr = 4, .tp_retire_blk_tov = 60,
	};

	return r;
}

static void check_rx(int rx, int tx)
{
	unsigned char frame[ETH_HLEN + sizeof(PAYLOAD)] = {}, buf[256];
	struct timeval tv = { .tv_sec = 30 };
	ssize_t n;

	want_bound(rx, lo, ETH_P_TEST, "rx");
	want_int(rx, SOL_PACKET, PACKET_AUXDATA, 1, "rx PACKET_AUXDATA");
	want_int(rx, SOL_PACKET, PACKET_ORIGDEV, 1, "rx PACKET_ORIGDEV");
	want_int(rx, SOL_PACKET, PACKET_FANOUT, FANOUT, "rx PACKET_FANOUT");
	/* Asked twice, lo stays promiscuous when dropped once. */
	if (!lo_promisc())
		fail("rx: lo not promiscuous after restore: membership lost");
	if (membership(rx, PACKET_DROP_MEMBERSHIP))
		fail("rx: PACKET_DROP_MEMBERSHIP: %s", test_strerror(errno));
	if (!lo_promisc())
		fail("rx: lo not promiscuous after one of two memberships dropped: one kept only");
	membership(rx, PACKET_DROP_MEMBERSHIP);
	want_bound(tx, lo, 0, "tx");

	/* lo's address is all zeros: the frame is addressed to it. */
	frame[12] = ETH_P_TEST >> 8;
	frame[13] = ETH_P_TEST & 0xff;
	memcpy(frame + ETH_HLEN, PAYLOAD, sizeof(PAYLOAD));
	if (setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		fail("rx: SO_RCVTIMEO: %s", test_strerror(errno));
	if (send(tx, frame, sizeof(frame), 0) != sizeof(frame))
		fail("tx: send: %s", test_strerror(errno));
	n = recv(rx, buf, sizeof(buf), 0);
	if (n < (ssize_t)sizeof(PAYLOAD) || memcmp(buf, PAYLOAD, sizeof(PAYLOAD)))
		fail("rx: received %zd bytes (%s), want the frame tx sent", n, test_strerror(errno));
}

static void check_ring(int ring)
{
	struct tpacket_req3 r = ring_req();
	size_t size = (size_t)r.tp_block_size * r.tp_block_nr;
	void *m;

	want_int(ring, SOL_PACKET, PACKET_VERSION, TPACKET_V3, "ring PACKET_VERSION");
	want_int(ring, SOL_PACKET, PACKET_RESERVE, RESERVE, "ring PACKET_RESERVE");
	m = mmap(NULL, size + 4096, PROT_READ, MAP_SHARED, ring, 0);
	if (m != MAP_FAILED)
		fail("ring: mapped %zu bytes, more than its ring", size + 4096);
	m = mmap(NULL, size, PROT_READ, MAP_SHARED, ring, 0);
	if (m == MAP_FAILED)
		fail("ring: no ring of %zu bytes to map after restore: %s", size, test_strerror(errno));
	munmap(m, size);
}

int main(void)
{
	int rx, tx, ring, opts, spkt, spkt0;
	struct tpacket_req3 r = ring_req();

	test_init();
	lo = if_nametoindex("lo");
	if (!lo)
		fail("if_nametoindex(lo): %s", test_strerror(errno));

	rx = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_TEST));
	tx = socket(AF_PACKET, SOCK_RAW, 0);
	ring = socket(AF_PACKET, SOCK_RAW, 0);
	opts = socket(AF_PACKET, SOCK_RAW, 0);
	spkt = socket(AF_PACKET, SOCK_PACKET, htons(ETH_P_ALL));
	spkt0 = socket(AF_PACKET, SOCK_PACKET, htons(ETH_P_ALL));
	if (rx < 0 || tx < 0 || ring < 0 || opts < 0 || spkt < 0 || spkt0 < 0)
		fail("socket: %s", test_strerror(errno));

	bind_lo(rx, ETH_P_TEST, "rx");
	set_int(rx, SOL_PACKET, PACKET_AUXDATA, 1, "rx PACKET_AUXDATA");
	set_int(rx, SOL_PACKET, PACKET_ORIGDEV, 1, "rx PACKET_ORIGDEV");
	set_int(rx, SOL_PACKET, PACKET_FANOUT, FANOUT, "rx PACKET_FANOUT");
	if (membership(rx, PACKET_ADD_MEMBERSHIP) || membership(rx, PACKET_ADD_MEMBERSHIP))
		fail("rx: PACKET_ADD_MEMBERSHIP: %s", test_strerror(errno));
	bind_lo(tx, 0, "tx");

	set_int(ring, SOL_PACKET, PACKET_VERSION, TPACKET_V3, "ring PACKET_VERSION");
	set_int(ring, SOL_PACKET, PACKET_RESERVE, RESERVE, "ring PACKET_RESERVE");
	if (setsockopt(ring, SOL_PACKET, PACKET_RX_RING, &r, sizeof(r)))
		fail("ring: PACKET_RX_RING: %s", test_strerror(errno));

	set_int(opts, SOL_PACKET, PACKET_VNET_HDR, 1, "opts PACKET_VNET_HDR");
	set_int(opts, SOL_PACKET, PACKET_LOSS, 1, "opts PACKET_LOSS");
	set_int(opts, SOL_PACKET, PACKET_TIMESTAMP, TSTAMP, "opts PACKET_TIMESTAMP");
	set_int(opts, SOL_PACKET, PACKET_COPY_THRESH, 1, "opts PACKET_COPY_THRESH");
	set_int(opts, SOL_SOCKET, SO_PRIORITY, 5, "opts SO_PRIORITY");

	spkt_bind(spkt);

	test_ready();
	test_wait_stop();

	check_rx(rx, tx);
	check_ring(ring);
	want_int(opts, SOL_PACKET, PACKET_VNET_HDR, 1, "opts PACKET_VNET_HDR");
	want_int(opts, SOL_PACKET, PACKET_LOSS, 1, "opts PACKET_LOSS");
	want_int(opts, SOL_PACKET, PACKET_TIMESTAMP, TSTAMP, "opts PACKET_TIMESTAMP");
	want_int(opts, SOL_SOCKET, SO_PRIORITY, 5, "opts SO_PRIORITY");
	want_int(spkt, SOL_SOCKET, SO_TYPE, SOCK_PACKET, "spkt SO_TYPE");
	want_spkt(spkt, "lo", "spkt");
	want_spkt(spkt0, "", "spkt0");
	pass();
}
