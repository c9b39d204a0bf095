/*
 * link_remap - files removed from the path they were opened by while
 * another hard link keeps them alive (dumped with --link-remap).
 *
 * plain: "lr.plain", 100 patterned bytes, also linked as "lr.plain.keep",
 * opened twice (fd a O_RDWR at offset 30, fd b O_RDONLY at offset 5), then
 * "lr.plain" is unlinked.  gone: "lr.dir/f", 50 patterned bytes, linked as
 * "lr.gone.keep", opened O_WRONLY|O_APPEND; "lr.dir/f" is unlinked and the
 * directory "lr.dir" removed, so the dump links it from the directory above.
 *
 * With LINK_REMAP_REFUSE set in its environment it also holds a corked UDP
 * socket at fd 100 (after the others: amber refuses it once it has linked
 * the files back): the dump must fail and remove its links.
 *
 * After SIGTERM: each fd is still the inode of its ".keep" link, which has
 * nlink 1 again (the dump's link and the restore's name are gone); the
 * /proc/self/fd links name "lr.plain (deleted)" and "lr.dir/f (deleted)";
 * offsets, flags and contents are as they were; a write through a is read
 * through b and through "lr.plain.keep"; "lr.plain", "lr.dir" and every
 * "link_remap.*" are gone.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

static unsigned char buf[256];

static void same_inode(int fd, const char *keep, const char *what)
{
	struct stat st, kst;
	if (fstat(fd, &st) || stat(keep, &kst))
		fail("%s: stat: %s", what, test_strerror(errno));
	if (st.st_ino != kst.st_ino || st.st_dev != kst.st_dev)
		fail("%s: inode %lu, %s is %lu", what, (unsigned long)st.st_ino, keep, (unsigned long)kst.st_ino);
	if (st.st_nlink != 1)
		fail("%s: nlink %lu, want 1 (only %s)", what, (unsigned long)st.st_nlink, keep);
}

static void proc_link(int fd, const char *name, const char *what)
{
	char link[64], target[4096], want[4096];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = 0;
	if (!getcwd(want, sizeof(want) - 64))
		fail("getcwd: %s", test_strerror(errno));
	strcat(want, "/");
	strcat(want, name);
	strcat(want, " (deleted)");
	if (strcmp(target, want))
		fail("%s: /proc link \"%s\", want \"%s\"", what, target, want);
}

static void expect_at(int fd, off_t pos, size_t len, uint64_t seed, const char *what)
{
	if (lseek(fd, 0, SEEK_CUR) != pos)
		fail("%s: offset %ld, want %ld", what, (long)lseek(fd, 0, SEEK_CUR), (long)pos);
	if (read(fd, buf, len) != (ssize_t)len)
		fail("%s: read %zu bytes: %s", what, len, test_strerror(errno));
	for (size_t i = 0; i < len; i++)
		if (buf[i] != pattern_byte(pos + i, seed))
			fail("%s: byte %ld differs", what, (long)(pos + i));
}

static void no_link_remaps(void)
{
	DIR *d = opendir(".");
	struct dirent *e;
	if (!d)
		fail("opendir: %s", test_strerror(errno));
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, "link_remap.", 11) && e->d_name[11] >= '0' && e->d_name[11] <= '9')
			fail("%s is left in the directory", e->d_name);
	closedir(d);
}

static void hold_refused(void)
{
	int one = 1, s = socket(AF_INET, SOCK_DGRAM, 0);
	if (s < 0 || setsockopt(s, IPPROTO_UDP, UDP_CORK, &one, sizeof(one)) || dup2(s, 100) != 100 || close(s))
		fail("corked UDP socket: %s", test_strerror(errno));
}

int main(void)
{
	int a, b, g;

	test_init();
	a = open("lr.plain", O_RDWR | O_CREAT | O_TRUNC, 0640);
	if (mkdir("lr.dir", 0755))
		fail("mkdir: %s", test_strerror(errno));
	g = open("lr.dir/f", O_WRONLY | O_APPEND | O_CREAT | O_TRUNC, 0600);
	if (a < 0 || g < 0)
		fail("create: %s", test_strerror(errno));
	fill_pattern(buf, 100, 1);
	if (write(a, buf, 100) != 100)
		fail("write: %s", test_strerror(errno));
	fill_pattern(buf, 50, 2);
	if (write(g, buf, 50) != 50)
		fail("write: %s", test_strerror(errno));
	b = open("lr.plain", O_RDONLY);
	if (b < 0 || link("lr.plain", "lr.plain.keep") || link("lr.dir/f", "lr.gone.keep"))
		fail("open or link: %s", test_strerror(errno));
	if (lseek(a, 30, SEEK_SET) != 30 || lseek(b, 5, SEEK_SET) != 5)
		fail("lseek: %s", test_strerror(errno));
	if (unlink("lr.plain") || unlink("lr.dir/f") || rmdir("lr.dir"))
		fail("unlink: %s", test_strerror(errno));
	if (getenv("LINK_REMAP_REFUSE"))
		hold_refused();

	test_ready();
	test_wait_stop();

	same_inode(a, "lr.plain.keep", "fd a");
	same_inode(b, "lr.plain.keep", "fd b");
	same_inode(g, "lr.gone.keep", "fd g");
	proc_link(a, "lr.plain", "fd a");
	proc_link(g, "lr.dir/f", "fd g");
	if ((fcntl(a, F_GETFL) & O_ACCMODE) != O_RDWR || (fcntl(b, F_GETFL) & O_ACCMODE) != O_RDONLY ||
	    (fcntl(g, F_GETFL) & (O_ACCMODE | O_APPEND)) != (O_WRONLY | O_APPEND))
		fail("open flags changed");
	expect_at(a, 30, 70, 1, "fd a");
	expect_at(b, 5, 20, 1, "fd b");
	if (write(g, "Z", 1) != 1 || lseek(g, 0, SEEK_CUR) != 51)
		fail("fd g no longer appends at 50: %s", test_strerror(errno));
	int k = open("lr.plain.keep", O_RDONLY);
	if (pwrite(a, "XY", 2, 0) != 2 || pread(b, buf, 2, 0) != 2 || memcmp(buf, "XY", 2))
		fail("a write through fd a is not seen through fd b");
	if (k < 0 || pread(k, buf, 2, 0) != 2 || memcmp(buf, "XY", 2))
		fail("a write through fd a is not seen through lr.plain.keep");
	if (access("lr.plain", F_OK) == 0 || access("lr.dir", F_OK) == 0)
		fail("a removed path exists again");
	no_link_remaps();
	pass();
}
