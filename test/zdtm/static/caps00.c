/*
 * caps00 - every capability set and the securebits of a root task survive
 * a checkpoint (CRIU's caps00, and the combinations a restore must order
 * its calls for).
 *
 * As root the program gives itself:
 *   - inheritable CAP_NET_BIND_SERVICE, CAP_NET_RAW, CAP_CHOWN and
 *     CAP_SYS_ADMIN, which it then drops from its bounding set (an
 *     inheritable capability outside the bounding set: capset cannot grant
 *     it once it is out);
 *   - a bounding set without CAP_SYS_ADMIN, CAP_SETPCAP, CAP_SYS_MODULE and
 *     CAP_MKNOD;
 *   - ambient CAP_NET_BIND_SERVICE and CAP_CHOWN;
 *   - securebits SECBIT_NO_CAP_AMBIENT_RAISE, SECBIT_NOROOT and
 *     SECBIT_KEEP_CAPS_LOCKED, each locked (ambient capabilities raised
 *     before raising them was forbidden);
 *   - permitted CAP_NET_BIND_SERVICE, CAP_NET_RAW, CAP_CHOWN, CAP_KILL and
 *     effective CAP_NET_RAW, CAP_KILL: no CAP_SETPCAP left, so nothing
 *     above can be changed any more.
 * After SIGTERM it reads all of it again (capget, PR_CAPBSET_READ,
 * PR_CAP_AMBIENT_IS_SET, PR_GET_SECUREBITS) and checks it against what it
 * had, and against /proc/thread-self/status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/securebits.h>
#include <string.h>

#include "zdtm.h"
#include "creds.h"

int main(void)
{
	uint64_t inh = cap_bit(CAP_NET_BIND_SERVICE) | cap_bit(CAP_NET_RAW) |
		       cap_bit(CAP_CHOWN) | cap_bit(CAP_SYS_ADMIN);
	uint64_t prm = cap_bit(CAP_NET_BIND_SERVICE) | cap_bit(CAP_NET_RAW) |
		       cap_bit(CAP_CHOWN) | cap_bit(CAP_KILL);
	uint64_t eff = cap_bit(CAP_NET_RAW) | cap_bit(CAP_KILL);
	int drop[] = { CAP_SYS_ADMIN, CAP_SETPCAP, CAP_SYS_MODULE, CAP_MKNOD };
	int secbits = SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED |
		      SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS_LOCKED;
	struct creds before;
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	char why[512];

	test_init();
	if (syscall(SYS_capget, &hdr, data))
		fail("capget: %s", strerror(errno));
	if (caps_set(data[0].effective | (uint64_t)data[1].effective << 32,
		     data[0].permitted | (uint64_t)data[1].permitted << 32, inh))
		fail("capset inheritable: %s", strerror(errno));
	for (unsigned i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
		if (prctl(PR_CAPBSET_DROP, drop[i], 0, 0, 0))
			fail("PR_CAPBSET_DROP %d: %s", drop[i], strerror(errno));
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) ||
	    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_CHOWN, 0, 0))
		fail("PR_CAP_AMBIENT_RAISE: %s", strerror(errno));
	if (prctl(PR_SET_SECUREBITS, secbits, 0, 0, 0))
		fail("PR_SET_SECUREBITS %#x: %s", secbits, strerror(errno));
	if (caps_set(eff, prm, inh))
		fail("capset: %s", strerror(errno));
	creds_read(&before);
	if (before.amb != (cap_bit(CAP_NET_BIND_SERVICE) | cap_bit(CAP_CHOWN)) ||
	    before.secbits != secbits || before.prm != prm)
		fail("set up: ambient %#" PRIx64 ", securebits %#x, permitted %#" PRIx64,
		     before.amb, before.secbits, before.prm);

	test_ready();
	test_wait_stop();

	if (creds_check("after restore", &before, why, sizeof(why)))
		fail("%s", why);
	pass();
}
