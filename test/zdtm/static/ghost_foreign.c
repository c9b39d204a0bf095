/*
 * ghost_foreign - an unlinked file whose owner its user namespace does
 * not map: "foreign", made by the driver in the program's directory with
 * an owner outside the namespace, mode 0666 and the bytes "foreign\n",
 * is opened O_RDWR and unlinked.  Inside, its owner shows as the overflow
 * id (65534), which a namespace mapping fewer ids does not map either:
 * a restore cannot give the file made again that owner.
 *
 * After SIGTERM: the file still reads its bytes and has nlink 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

int main(void)
{
	char got[16] = { 0 };
	struct stat st;
	int fd;

	test_init();
	fd = open("foreign", O_RDWR);
	if (fd < 0 || unlink("foreign"))
		fail("foreign: %s", test_strerror(errno));

	test_ready();
	test_wait_stop();

	if (pread(fd, got, sizeof(got) - 1, 0) != 8 || strcmp(got, "foreign\n"))
		fail("foreign reads \"%s\"", got);
	if (fstat(fd, &st) || st.st_nlink != 0)
		fail("foreign: nlink %lu, want 0", (unsigned long)st.st_nlink);
	pass();
}
