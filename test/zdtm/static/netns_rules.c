/*
 * netns_rules - a process in a network namespace of its own with
 * firewall rules of its own and a TCP connection to itself over the
 * loopback, as CRIU's netns-nft, netns-nf and netns_lock_*.
 *
 * It brings the loopback up, makes an nftables table "inet amber_rules"
 * (an input chain dropping TCP to port 9) and, if iptables-legacy is
 * installed, a legacy rule (INPUT, UDP to port 9, DROP), and keeps what
 * "nft list table" and "iptables-legacy -S" print of them.  Then it
 * connects to itself over 127.0.0.1 and says "ready".
 *
 * The dump locks the whole namespace, and saves its rules with the lock
 * in them; the restore brings the rules back and lifts the lock once the
 * process is back.
 *
 * After SIGTERM: both listings print as before, no table or chain of a
 * network lock is left, and "ping" goes through the connection both
 * ways within five seconds (a lock left in place would drop it).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "zdtm.h"

#define LISTING 8192

static void run(const char *cmd)
{
	if (system(cmd))
		fail("%s: failed", cmd);
}

/* capture returns what cmd prints, in a buffer of its own. */
static char *capture(const char *cmd)
{
	char *buf = calloc(1, LISTING);
	FILE *p = popen(cmd, "r");
	size_t n;

	if (!buf || !p)
		fail("%s: %s", cmd, strerror(errno));
	n = fread(buf, 1, LISTING - 1, p);
	if (pclose(p))
		fail("%s: failed", cmd);
	buf[n] = 0;
	return buf;
}

/* self_connect connects a socket to a listener of its own on
 * 127.0.0.1; *srv gets the accepted end. */
static int self_connect(int *srv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || c < 0 || bind(l, (struct sockaddr *)&a, len) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &len) || connect(c, (struct sockaddr *)&a, len))
		fail("connect to itself: %s", strerror(errno));
	*srv = accept(l, NULL, NULL);
	if (*srv < 0)
		fail("accept: %s", strerror(errno));
	close(l);
	return c;
}

static void ping(int from, int to, const char *way)
{
	struct timeval tv = { .tv_sec = 5 };
	char buf[5] = { 0 };
	ssize_t n;

	if (setsockopt(to, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		fail("SO_RCVTIMEO: %s", strerror(errno));
	if (write(from, "ping", 4) != 4)
		fail("%s: write: %s", way, strerror(errno));
	n = recv(to, buf, 4, MSG_WAITALL);
	if (n != 4 || strcmp(buf, "ping"))
		fail("%s: got %zd bytes \"%s\" (%s): is the network still locked?", way, n, buf,
		     n < 0 ? strerror(errno) : "");
}

static void expect_same(const char *what, const char *before, const char *after)
{
	if (strcmp(before, after))
		fail("%s changed:\n--- before\n%s--- after\n%s", what, before, after);
}

int main(void)
{
	char *nft, *legacy = NULL, *tables;
	int legacy_ok, cli, srv;

	test_init();
	setenv("PATH", "/usr/sbin:/sbin:/usr/bin:/bin", 1);
	loopback_up();
	run("nft add table inet amber_rules");
	run("nft 'add chain inet amber_rules input { type filter hook input priority 0; }'");
	run("nft add rule inet amber_rules input tcp dport 9 drop");
	nft = capture("nft list table inet amber_rules");
	legacy_ok = system("iptables-legacy -V >/dev/null 2>&1") == 0;
	if (legacy_ok) {
		run("iptables-legacy -w -A INPUT -p udp --dport 9 -j DROP");
		legacy = capture("iptables-legacy -w -S");
	}
	cli = self_connect(&srv);
	test_ready();

	test_wait_stop();
	expect_same("nft list table inet amber_rules", nft, capture("nft list table inet amber_rules"));
	if (legacy_ok)
		expect_same("iptables-legacy -S", legacy, capture("iptables-legacy -w -S"));
	tables = capture("nft list ruleset");
	if (strstr(tables, "CRIU"))
		fail("a network lock is left:\n%s", tables);
	ping(cli, srv, "client to server");
	ping(srv, cli, "server to client");
	pass();
}
