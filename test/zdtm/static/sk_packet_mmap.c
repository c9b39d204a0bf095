/*
 * sk_packet_mmap - a packet socket whose receive ring is mapped, as
 * CRIU's packet_sock_mmap. amber cannot map a ring again yet: the dump
 * must be refused, naming the descriptor, and the program run on with
 * its mapping.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/if_packet.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtm.h"

int main(void)
{
	struct tpacket_req r = { .tp_block_size = 4096, .tp_block_nr = 1, .tp_frame_size = 1024, .tp_frame_nr = 4 };
	volatile unsigned char *ring;
	int sk;

	test_init();
	sk = socket(AF_PACKET, SOCK_RAW, 0);
	if (sk < 0)
		fail("socket: %s", test_strerror(errno));
	if (setsockopt(sk, SOL_PACKET, PACKET_RX_RING, &r, sizeof(r)))
		fail("PACKET_RX_RING: %s", test_strerror(errno));
	ring = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sk, 0);
	if (ring == MAP_FAILED)
		fail("mmap: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	if (ring[0] != 0) /* TP_STATUS_KERNEL: the frame is the kernel's */
		fail("ring: first frame status %#x", ring[0]);
	pass();
}
