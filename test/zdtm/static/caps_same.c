/*
 * caps_same - the credentials the program was started with survive a
 * checkpoint, whatever they are: test/caps_test.go starts it under setpriv
 * with capabilities dropped, securebits locked or as another user with
 * ambient capabilities.  It reads its ids, groups, capability sets,
 * securebits and no_new_privs at start and checks them after SIGTERM
 * (capget, prctl, /proc/thread-self/status).
 */
#define _GNU_SOURCE
#include "zdtm.h"
#include "creds.h"

int main(void)
{
	struct creds before;
	char why[512];

	test_init();
	creds_read(&before);
	test_ready();
	test_wait_stop();
	if (creds_check("after restore", &before, why, sizeof(why)))
		fail("%s", why);
	pass();
}
