/*
 * nnp00 - no_new_privs survives a checkpoint.
 *
 * Sets PR_SET_NO_NEW_PRIVS (which can never be cleared); after SIGTERM
 * PR_GET_NO_NEW_PRIVS must still say 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/prctl.h>

#include "zdtm.h"

int main(void)
{
	test_init();
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		fail("PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	test_ready();
	test_wait_stop();
	int v = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
	if (v != 1)
		fail("no_new_privs is %d after restore, want 1", v);
	pass();
}
