/*
 * ghost_then_bind - an unlinked file, then a datagram socket bound to the
 * abstract name "amber-ghost-then-bind-PID": a restore makes the file
 * again (a ghost, under a name of its own beside it) before it binds the
 * socket, so a name taken meanwhile fails the restore after it.
 *
 * "ghost_then_bind.data", 64 patterned bytes, is opened O_RDWR and
 * unlinked; the socket is bound.  After SIGTERM: the file still reads its
 * bytes, has nlink 0 and its path does not exist; the socket has its
 * name.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "zdtm.h"

#define DATA "ghost_then_bind.data"

int main(void)
{
	unsigned char want[64], got[64];
	struct sockaddr_un sa = { .sun_family = AF_UNIX }, name;
	socklen_t len, namelen = sizeof(name);
	struct stat st;
	int fd, sk;

	test_init();
	fill_pattern(want, sizeof(want), 7);
	fd = open(DATA, O_RDWR | O_CREAT | O_EXCL, 0640);
	if (fd < 0 || write(fd, want, sizeof(want)) != sizeof(want) || unlink(DATA))
		fail("%s: %s", DATA, test_strerror(errno));
	len = offsetof(struct sockaddr_un, sun_path) + 1 +
	      snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "amber-ghost-then-bind-%d", getpid());
	sk = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (sk < 0 || bind(sk, (struct sockaddr *)&sa, len))
		fail("bind: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	if (pread(fd, got, sizeof(got), 0) != sizeof(got) || memcmp(got, want, sizeof(want)))
		fail("%s: its bytes are not those written", DATA);
	if (fstat(fd, &st) || st.st_nlink != 0)
		fail("%s: nlink %lu, want 0", DATA, (unsigned long)st.st_nlink);
	if (access(DATA, F_OK) == 0)
		fail("%s exists again", DATA);
	if (getsockname(sk, (struct sockaddr *)&name, &namelen) || namelen != len || memcmp(&name, &sa, len))
		fail("the socket lost its name");
	pass();
}
