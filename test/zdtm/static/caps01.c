/*
 * caps01 - threads of one process with credentials of their own survive a
 * checkpoint (CRIU's caps01 and thread_different_uid_gid): each thread's
 * uids, gids, groups, capability sets, securebits, no_new_privs and parent
 * death signal are its own, set with raw system calls.
 *
 *   worker 0: root, permitted and effective CAP_KILL and CAP_CHOWN only, a
 *             bounding set without CAP_NET_RAW;
 *   worker 1: uid 1000 (fsuid 1001), gid 1000 (fsgid 1002), groups 1000 and
 *             27, kept across setresuid with PR_SET_KEEPCAPS: permitted
 *             CAP_NET_BIND_SERVICE, CAP_NET_RAW, CAP_SETUID, effective and
 *             inheritable and ambient CAP_NET_BIND_SERVICE, securebits
 *             SECBIT_KEEP_CAPS without CAP_SETPCAP to change them, parent
 *             death signal SIGUSR2 set after its identity changed (a
 *             credential change clears it);
 *   worker 2: root with no capability in any set, locked SECBIT_NOROOT and
 *             SECBIT_NO_SETUID_FIXUP, no_new_privs;
 *   main:     real and effective uid 2000, saved uid 0, every permitted
 *             capability but effective CAP_KILL and CAP_DAC_OVERRIDE only,
 *             SECBIT_KEEP_CAPS; it sets itself dumpable again after its
 *             euid change made it not.
 * After SIGTERM each thread checks its own credentials (capget, prctl,
 * /proc/thread-self/status) and main that the process is still dumpable.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/securebits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "zdtm.h"
#include "creds.h"

#define NWORKERS 3

struct worker {
	int index;
	struct creds before;
	int pdeathsig;
	char error[512];
};

static struct worker workers[NWORKERS];
static atomic_int set_up;	/* workers with their credentials in place */
static atomic_int stop;		/* set by the SIGTERM handler */

static void stop_hook(void)
{
	atomic_store(&stop, 1);
}

/* root with a few capabilities and a narrower bounding set. */
static int setup_root_few(void)
{
	uint64_t caps = cap_bit(CAP_KILL) | cap_bit(CAP_CHOWN);

	return prctl(PR_CAPBSET_DROP, CAP_NET_RAW, 0, 0, 0) || caps_set(caps, caps, 0);
}

/* uid 1000 keeping some capabilities, one of them ambient. */
static int setup_user(void)
{
	unsigned int groups[] = { 1000, 27 };
	uint64_t nbs = cap_bit(CAP_NET_BIND_SERVICE);
	uint64_t prm = nbs | cap_bit(CAP_NET_RAW) | cap_bit(CAP_SETUID);

	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) ||
	    syscall(SYS_setgroups, 2, groups) ||
	    syscall(SYS_setresgid, 1000, 1000, 1000))
		return -1;
	syscall(SYS_setfsgid, 1002);
	if (syscall(SYS_setresuid, 1000, 1000, 1000))
		return -1;
	/* Leaving euid 0 emptied the effective set: CAP_SETUID back. */
	if (caps_set(prm, prm, nbs))
		return -1;
	syscall(SYS_setfsuid, 1001);
	if (caps_set(nbs, prm, nbs) ||
	    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0))
		return -1;
	return prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0);
}

/* root with nothing, securebits locked, no_new_privs. */
static int setup_root_none(void)
{
	int secbits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
		      SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED;

	for (int n = 0; n <= cap_last(); n++)
		if (prctl(PR_CAPBSET_DROP, n, 0, 0, 0))
			return -1;
	return prctl(PR_SET_SECUREBITS, secbits, 0, 0, 0) || caps_set(0, 0, 0) ||
	       prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

static int (*const setups[NWORKERS])(void) = { setup_root_few, setup_user, setup_root_none };

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct timespec nap = { 0, 10 * 1000 * 1000 };
	char who[32];
	int sig = -1;

	if (setups[w->index]()) {
		snprintf(w->error, sizeof(w->error), "set up: %s", strerror(errno));
		atomic_fetch_add(&set_up, 1);
		return NULL;
	}
	creds_read(&w->before);
	prctl(PR_GET_PDEATHSIG, &w->pdeathsig, 0, 0, 0);
	atomic_fetch_add(&set_up, 1);

	while (!atomic_load(&stop))
		nanosleep(&nap, NULL);

	snprintf(who, sizeof(who), "worker %d", w->index);
	if (creds_check(who, &w->before, w->error, sizeof(w->error)))
		return NULL;
	if (prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0) || sig != w->pdeathsig)
		snprintf(w->error, sizeof(w->error), "%s: parent death signal %d, want %d",
			 who, sig, w->pdeathsig);
	return NULL;
}

/* main: uid 2000 with saved uid 0, every capability permitted. */
static void setup_main(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	uint64_t eff = cap_bit(CAP_KILL) | cap_bit(CAP_DAC_OVERRIDE);

	if (prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS, 0, 0, 0) ||
	    syscall(SYS_setresuid, 2000, 2000, 0) ||
	    syscall(SYS_capget, &hdr, data) ||
	    caps_set(eff, data[0].permitted | (uint64_t)data[1].permitted << 32, 0))
		fail("set up main: %s", strerror(errno));
	if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
		fail("changing euid left the process dumpable");
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0))
		fail("PR_SET_DUMPABLE: %s", strerror(errno));
}

int main(void)
{
	pthread_t threads[NWORKERS];
	struct timespec nap = { 0, 1000 * 1000 };
	sigset_t term;
	struct creds before;
	char why[512];

	test_init();
	test_on_stop(stop_hook);
	signal(SIGUSR2, SIG_IGN);
	/* The workers leave SIGTERM to main. */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &term, NULL);
	for (int i = 0; i < NWORKERS; i++) {
		workers[i].index = i;
		if ((errno = pthread_create(&threads[i], NULL, worker_main, &workers[i])))
			fail("pthread_create: %s", strerror(errno));
	}
	pthread_sigmask(SIG_UNBLOCK, &term, NULL);
	while (atomic_load(&set_up) < NWORKERS)
		nanosleep(&nap, NULL);
	for (int i = 0; i < NWORKERS; i++)
		if (workers[i].error[0])
			fail("worker %d: %s", i, workers[i].error);
	setup_main();
	creds_read(&before);

	test_ready();
	test_wait_stop();

	if (creds_check("main", &before, why, sizeof(why)))
		fail("%s", why);
	for (int i = 0; i < NWORKERS; i++) {
		pthread_join(threads[i], NULL);
		if (workers[i].error[0])
			fail("%s", workers[i].error);
	}
	if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1)
		fail("not dumpable after restore");
	pass();
}
