/*
 * packet_ring00 - a packet socket's receive and transmit rings mapped in
 * memory (PACKET_RX_RING, PACKET_TX_RING), as CRIU's packet_sock_mmap,
 * in a process and in a child it forked.
 *
 * In a network namespace of its own (loopback up): a raw packet socket
 * bound to lo, with a ring of 4 frames each way, both mapped by one
 * mmap (MAP_SHARED). A UDP datagram sent on lo lands in a frame of the
 * receive ring, read from the mapping; the frames are given back to the
 * kernel. A child is forked, which inherits the socket and the mapping.
 *
 * After SIGTERM: the parent, then the child, finds the mapping at the
 * same address, mapping the same socket (/proc/self/maps), and a
 * datagram sent on lo lands in a frame of the ring read through it: the
 * mapping is the socket's live ring (the frames' contents of before the
 * dump are not kept, as with CRIU).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define FRAME 2048
#define FRAMES 4
#define RING (FRAME * FRAMES)

static int sk;
static char *ring;

/* capture sends a datagram holding tag on lo and finds it in a frame of
 * the receive ring; every frame is given back to the kernel after. */
static int capture(const char *tag)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct pollfd p = { .fd = sk, .events = POLLIN };
	int u, i, found = 0, tries;

	u = socket(AF_INET, SOCK_DGRAM, 0);
	if (u < 0 || sendto(u, tag, strlen(tag), 0, (struct sockaddr *)&to, sizeof(to)) != (ssize_t)strlen(tag))
		fail("send a datagram: %s", test_strerror(errno));
	close(u);
	for (tries = 0; tries < 20 && !found; tries++) {
		if (poll(&p, 1, 100) < 0)
			fail("poll: %s", test_strerror(errno));
		for (i = 0; i < FRAMES; i++) {
			struct tpacket_hdr *h = (struct tpacket_hdr *)(ring + i * FRAME);

			if (!(h->tp_status & TP_STATUS_USER))
				continue;
			if (memmem((char *)h + h->tp_mac, h->tp_snaplen, tag, strlen(tag)))
				found = 1;
			h->tp_status = TP_STATUS_KERNEL;
		}
	}
	return found;
}

/* mapped tells whether /proc/self/maps shows the ring at its address,
 * mapping the socket. */
static int mapped(void)
{
	struct stat st;
	char line[512];
	FILE *f;
	int ok = 0;

	if (fstat(sk, &st))
		fail("fstat: %s", test_strerror(errno));
	f = fopen("/proc/self/maps", "r");
	if (!f)
		fail("/proc/self/maps: %s", test_strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		unsigned long start, end;
		unsigned long long ino;
		unsigned int maj, min;

		if (sscanf(line, "%lx-%lx %*s %*s %x:%x %llu", &start, &end, &maj, &min, &ino) == 5 &&
		    start == (unsigned long)ring && end - start == 2 * RING && ino == st.st_ino &&
		    makedev(maj, min) == st.st_dev)
			ok = 1;
	}
	fclose(f);
	return ok;
}

static void check(const char *who)
{
	char tag[64];

	if (!mapped())
		fail("%s: the ring is not mapped at %p from the socket after restore", who, ring);
	snprintf(tag, sizeof(tag), "amber ring %s after", who);
	if (!capture(tag))
		fail("%s: a datagram on lo did not land in the ring mapped at %p", who, ring);
}

int main(void)
{
	struct tpacket_req req = { .tp_block_size = 4096, .tp_block_nr = RING / 4096, .tp_frame_size = FRAME, .tp_frame_nr = FRAMES };
	struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };
	int go[2], status;
	pid_t child;
	char c;

	test_init();
	loopback_up();
	sk = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	if (sk < 0)
		fail("packet socket: %s", test_strerror(errno));
	ll.sll_ifindex = if_nametoindex("lo");
	if (!ll.sll_ifindex || bind(sk, (struct sockaddr *)&ll, sizeof(ll)))
		fail("bind to lo: %s", test_strerror(errno));
	if (setsockopt(sk, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) ||
	    setsockopt(sk, SOL_PACKET, PACKET_TX_RING, &req, sizeof(req)))
		fail("rings: %s", test_strerror(errno));
	ring = mmap(NULL, 2 * RING, PROT_READ | PROT_WRITE, MAP_SHARED, sk, 0);
	if (ring == MAP_FAILED)
		fail("mmap the rings: %s", test_strerror(errno));
	if (!capture("amber ring before"))
		fail("a datagram on lo did not land in the ring before the dump");
	if (pipe(go))
		fail("pipe: %s", test_strerror(errno));
	child = fork();
	if (child < 0)
		fail("fork: %s", test_strerror(errno));
	if (child == 0) {
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		check("child");
		_exit(0);
	}

	test_ready();
	test_wait_stop();

	check("parent");
	if (write(go[1], "g", 1) != 1)
		fail("wake the child: %s", test_strerror(errno));
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("the child's check failed (status %#x)", status);
	pass();
}
