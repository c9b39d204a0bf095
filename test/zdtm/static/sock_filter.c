/*
 * sock_filter - classic BPF socket filters (SO_ATTACH_FILTER), as CRIU's
 * sock_filter00/01: a UDP socket with a 14-instruction filter, and one
 * end of a unix datagram socketpair with a filter that keeps only the
 * datagrams whose first byte is 'A'.
 *
 * After SIGTERM: SO_GET_FILTER gives back each filter, instruction for
 * instruction, and the unix socket's filter still works: of "B1", "A2",
 * "B3", "A4" sent to it, only "A2" and "A4" arrive, in order.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtm.h"

static struct sock_filter udp_filter[] = {
	{ 0x28, 0, 0, 0x0000000c }, { 0x15, 0, 4, 0x00000800 }, { 0x20, 0, 0, 0x0000001a },
	{ 0x15, 8, 0, 0x7f000001 }, { 0x20, 0, 0, 0x0000001e }, { 0x15, 6, 7, 0x7f000001 },
	{ 0x15, 1, 0, 0x00000806 }, { 0x15, 0, 5, 0x00008035 }, { 0x20, 0, 0, 0x0000001c },
	{ 0x15, 2, 0, 0x7f000001 }, { 0x20, 0, 0, 0x00000026 }, { 0x15, 0, 1, 0x7f000001 },
	{ 0x6, 0, 0, 0x0000ffff },  { 0x6, 0, 0, 0x00000000 },
};

/* Keep a datagram whose first byte is 'A', drop the others. */
static struct sock_filter only_a[] = {
	BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 'A', 0, 1),
	BPF_STMT(BPF_RET | BPF_K, 0xffff),
	BPF_STMT(BPF_RET | BPF_K, 0),
};

static void attach(int fd, struct sock_filter *f, unsigned short n, const char *what)
{
	struct sock_fprog p = { .len = n, .filter = f };

	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &p, sizeof(p)))
		fail("%s: SO_ATTACH_FILTER: %s", what, test_strerror(errno));
}

static void same_filter(int fd, struct sock_filter *want, unsigned n, const char *what)
{
	struct sock_filter got[32];
	socklen_t len = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, NULL, &len))
		fail("%s: SO_GET_FILTER length: %s", what, test_strerror(errno));
	if (len != n)
		fail("%s: filter of %u instructions after restore, %u before", what, (unsigned)len, n);
	memset(got, 0, sizeof(got));
	if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, got, &len))
		fail("%s: SO_GET_FILTER: %s", what, test_strerror(errno));
	if (len != n || memcmp(got, want, n * sizeof(*want)))
		fail("%s: filter differs after restore", what);
}

int main(void)
{
	const char *sent[] = { "B1", "A2", "B3", "A4" }, *want[] = { "A2", "A4" };
	int udp, sp[2];
	char buf[8];
	size_t i;
	ssize_t n;

	test_init();
	udp = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
	if (udp < 0 || socketpair(AF_UNIX, SOCK_DGRAM, 0, sp))
		fail("socket: %s", test_strerror(errno));
	attach(udp, udp_filter, sizeof(udp_filter) / sizeof(udp_filter[0]), "udp");
	attach(sp[0], only_a, sizeof(only_a) / sizeof(only_a[0]), "unix");

	test_ready();
	test_wait_stop();

	same_filter(udp, udp_filter, sizeof(udp_filter) / sizeof(udp_filter[0]), "udp");
	same_filter(sp[0], only_a, sizeof(only_a) / sizeof(only_a[0]), "unix");
	for (i = 0; i < 4; i++)
		if (send(sp[1], sent[i], 2, 0) != 2)
			fail("send %s: %s", sent[i], test_strerror(errno));
	for (i = 0; i < 2; i++) {
		n = recv(sp[0], buf, sizeof(buf), MSG_DONTWAIT);
		if (n != 2 || memcmp(buf, want[i], 2))
			fail("datagram %zu: got %zd bytes (%.*s), want %s", i, n, n > 0 ? (int)n : 0, buf, want[i]);
	}
	if (recv(sp[0], buf, sizeof(buf), MSG_DONTWAIT) != -1 || errno != EAGAIN)
		fail("a datagram the filter should have dropped arrived");
	pass();
}
