/*
 * tcp_skip_inflight - a TCP listener with a connection waiting to be
 * accepted, and the connecting end (criu's --tcp-skip-in-flight, zdtm
 * socket-tcp-skip-in-flight).
 *
 * l listens on 127.0.0.1, a port the kernel picks, backlog 4; c
 * connects to it and is never accepted.  The driver dumps it with
 * --tcp-established --tcp-skip-in-flight and restores it.  After
 * SIGTERM: l is still listening on its address with nothing to accept
 * (the waiting connection was left out of the dump), and it accepts a
 * new connection, over which a byte goes.  If the file "not_dumped" is
 * in the working directory (the driver's refused dump), the waiting
 * connection must instead still be there to accept.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtm.h"

static int port_of(int fd)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	if (getsockname(fd, (struct sockaddr *)&a, &len))
		fail("getsockname: %s", test_strerror(errno));
	return ntohs(a.sin_port);
}

static int connect_to(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)))
		fail("connect to port %d: %s", port, test_strerror(errno));
	return fd;
}

int main(void)
{
	struct sockaddr_in at = { .sin_family = AF_INET };
	int l, c, n, a, aerr, port, accepting;
	socklen_t len = sizeof(accepting);
	char buf[1];

	test_init();
	at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&at, sizeof(at)) || listen(l, 4))
		fail("listen: %s", test_strerror(errno));
	port = port_of(l);
	c = connect_to(port);

	test_ready();
	test_wait_stop();

	if (port_of(l) != port)
		fail("listener on port %d after restore, was %d", port_of(l), port);
	if (getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) || !accepting)
		fail("listener no longer listening");
	if (fcntl(l, F_SETFL, O_NONBLOCK))
		fail("O_NONBLOCK: %s", test_strerror(errno));
	a = accept(l, NULL, NULL);
	aerr = errno;
	if (access("not_dumped", F_OK) == 0) {
		if (a < 0)
			fail("the waiting connection is gone without a dump: %s", test_strerror(aerr));
		close(a);
	} else if (a >= 0 || aerr != EAGAIN) {
		fail("a connection to accept after restore (accept: %d, %s); want it left out", a,
		     a < 0 ? test_strerror(aerr) : "accepted");
	}
	close(c);

	n = connect_to(port);
	if (fcntl(l, F_SETFL, 0))
		fail("clear O_NONBLOCK: %s", test_strerror(errno));
	a = accept(l, NULL, NULL);
	if (a < 0 || write(n, "x", 1) != 1 || read(a, buf, 1) != 1 || buf[0] != 'x')
		fail("new connection after restore: %s", test_strerror(errno));
	close(a);
	close(n);
	pass();
}
