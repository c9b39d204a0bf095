/*
 * proc_maps_fd - a process keeps /proc/self/maps open (as CRIU's maps09
 * does through zdtm's get_mapping_dev, which never closes it).
 *
 * /proc files are regular files whose times are when their inode was
 * made: a restore must not take the file for one changed since the dump.
 * The test opens /proc/self/maps, reads 100 bytes and keeps it open.
 * After SIGTERM the descriptor is still open on /proc/PID/maps (PID its
 * own), at offset 100, and reading it from the start shows the process's
 * own maps (its [stack] line).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "zdtm.h"

int main(void)
{
	char buf[65536], link[64], want[64];
	ssize_t n, total = 0;
	off_t pos;
	int fd;

	test_init();
	fd = open("/proc/self/maps", O_RDONLY);
	if (fd < 0)
		fail("open /proc/self/maps: %s", test_strerror(errno));
	if (read(fd, buf, 100) != 100)
		fail("read /proc/self/maps: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, buf, sizeof(buf) - 1);
	if (n < 0)
		fail("readlink %s: %s", link, test_strerror(errno));
	buf[n] = 0;
	snprintf(want, sizeof(want), "/proc/%d/maps", getpid());
	if (strcmp(buf, want))
		fail("fd %d is %s, want %s", fd, buf, want);
	if ((pos = lseek(fd, 0, SEEK_CUR)) != 100)
		fail("fd %d at offset %lld, want 100", fd, (long long)pos);
	if (lseek(fd, 0, SEEK_SET))
		fail("lseek: %s", test_strerror(errno));
	while ((n = read(fd, buf + total, sizeof(buf) - 1 - total)) > 0)
		total += n;
	if (n < 0)
		fail("read /proc/self/maps: %s", test_strerror(errno));
	buf[total] = 0;
	if (!strstr(buf, "[stack]"))
		fail("no [stack] line in the maps read from fd %d", fd);
	pass();
}
