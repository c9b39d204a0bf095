/*
 * creds.h - a thread's credentials, read the ways a program can: ids with
 * getres[ug]id and setfs[ug]id(-1), groups, capget, PR_CAPBSET_READ,
 * PR_CAP_AMBIENT_IS_SET, PR_GET_SECUREBITS, PR_GET_NO_NEW_PRIVS; and
 * checked against /proc/thread-self/status.  Every call is the raw system
 * call: glibc's set*id wrappers change every thread of the process, and
 * these tests give threads credentials of their own.
 */
#ifndef ZDTM_CREDS_H
#define ZDTM_CREDS_H

#include <errno.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CREDS_MAX_GROUPS 32

struct creds {
	unsigned int uid[4], gid[4];	/* real, effective, saved, fs */
	int ngroups;
	unsigned int groups[CREDS_MAX_GROUPS];
	uint64_t inh, prm, eff, bnd, amb;
	int secbits, nnp;
};

static inline int cap_last(void)
{
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "r");
	int n = -1;

	if (!f || fscanf(f, "%d", &n) != 1)
		fail("read /proc/sys/kernel/cap_last_cap");
	fclose(f);
	return n;
}

static inline uint64_t cap_bit(int cap)
{
	return 1ULL << cap;
}

/* capset(2) of this thread's three sets. */
static inline int caps_set(uint64_t eff, uint64_t prm, uint64_t inh)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2] = {
		{ (uint32_t)eff, (uint32_t)prm, (uint32_t)inh },
		{ (uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32) },
	};

	return syscall(SYS_capset, &hdr, data);
}

/* Read this thread's credentials; fail() if a call fails. */
static inline void creds_read(struct creds *c)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	int last = cap_last();

	memset(c, 0, sizeof(*c));
	if (syscall(SYS_getresuid, &c->uid[0], &c->uid[1], &c->uid[2]) ||
	    syscall(SYS_getresgid, &c->gid[0], &c->gid[1], &c->gid[2]))
		fail("getres[ug]id: %s", strerror(errno));
	c->uid[3] = syscall(SYS_setfsuid, -1);
	c->gid[3] = syscall(SYS_setfsgid, -1);
	c->ngroups = syscall(SYS_getgroups, CREDS_MAX_GROUPS, c->groups);
	if (c->ngroups < 0)
		fail("getgroups: %s", strerror(errno));
	if (syscall(SYS_capget, &hdr, data))
		fail("capget: %s", strerror(errno));
	c->eff = data[0].effective | (uint64_t)data[1].effective << 32;
	c->prm = data[0].permitted | (uint64_t)data[1].permitted << 32;
	c->inh = data[0].inheritable | (uint64_t)data[1].inheritable << 32;
	for (int n = 0; n <= last; n++) {
		int b = prctl(PR_CAPBSET_READ, n, 0, 0, 0);
		int a = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, n, 0, 0);

		if (b < 0 || a < 0)
			fail("read capability %d: %s", n, strerror(errno));
		c->bnd |= (uint64_t)b << n;
		c->amb |= (uint64_t)a << n;
	}
	c->secbits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
	c->nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
	if (c->secbits < 0 || c->nnp < 0)
		fail("prctl: %s", strerror(errno));
}

/*
 * Describe in buf the first difference between want and got; return 0 if
 * they are the same.
 */
static inline int creds_diff(const struct creds *want, const struct creds *got,
			     char *buf, size_t len)
{
	static const char *const id[4] = { "real", "effective", "saved", "fs" };
	const uint64_t *w = &want->inh, *g = &got->inh;
	static const char *const set[5] = { "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb" };

	for (int i = 0; i < 4; i++) {
		if (want->uid[i] != got->uid[i])
			return snprintf(buf, len, "%s uid %u, want %u", id[i], got->uid[i], want->uid[i]);
		if (want->gid[i] != got->gid[i])
			return snprintf(buf, len, "%s gid %u, want %u", id[i], got->gid[i], want->gid[i]);
	}
	if (want->ngroups != got->ngroups ||
	    memcmp(want->groups, got->groups, want->ngroups * sizeof(want->groups[0])))
		return snprintf(buf, len, "%d groups (first %u), want %d (first %u)",
				got->ngroups, got->groups[0], want->ngroups, want->groups[0]);
	for (int i = 0; i < 5; i++)
		if (w[i] != g[i])
			return snprintf(buf, len, "%s %016" PRIx64 ", want %016" PRIx64, set[i], g[i], w[i]);
	if (want->secbits != got->secbits)
		return snprintf(buf, len, "securebits %#x, want %#x", got->secbits, want->secbits);
	if (want->nnp != got->nnp)
		return snprintf(buf, len, "no_new_privs %d, want %d", got->nnp, want->nnp);
	return 0;
}

/*
 * Check that /proc/thread-self/status shows c: the ids, groups, every
 * capability set and no_new_privs.  Describe the first difference in buf
 * and return non-zero, or return 0.
 */
static inline int creds_status_diff(const struct creds *c, char *buf, size_t len)
{
	const uint64_t *sets = &c->inh;
	static const char *const set[5] = { "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb" };
	char line[512], want[512];
	int seen = 0;
	FILE *f = fopen("/proc/thread-self/status", "r");

	if (!f)
		return snprintf(buf, len, "open /proc/thread-self/status: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		want[0] = 0;
		if (!strncmp(line, "Uid:", 4))
			snprintf(want, sizeof(want), "Uid:\t%u\t%u\t%u\t%u\n", c->uid[0], c->uid[1], c->uid[2], c->uid[3]);
		else if (!strncmp(line, "Gid:", 4))
			snprintf(want, sizeof(want), "Gid:\t%u\t%u\t%u\t%u\n", c->gid[0], c->gid[1], c->gid[2], c->gid[3]);
		else if (!strncmp(line, "NoNewPrivs:", 11))
			snprintf(want, sizeof(want), "NoNewPrivs:\t%d\n", c->nnp);
		else if (!strncmp(line, "Groups:", 7)) {
			int n = snprintf(want, sizeof(want), "Groups:\t");

			/* Space separated, and a space at the end even if none. */
			for (int i = 0; i < c->ngroups; i++)
				n += snprintf(want + n, sizeof(want) - n, "%s%u", i ? " " : "", c->groups[i]);
			snprintf(want + n, sizeof(want) - n, " \n");
		}
		for (int i = 0; i < 5; i++)
			if (!strncmp(line, set[i], 6))
				snprintf(want, sizeof(want), "%s:\t%016" PRIx64 "\n", set[i], sets[i]);
		if (!want[0])
			continue;
		seen++;
		if (strcmp(line, want)) {
			fclose(f);
			return snprintf(buf, len, "/proc/thread-self/status has %.*s, want %.*s",
					(int)strcspn(line, "\n"), line, (int)strcspn(want, "\n"), want);
		}
	}
	fclose(f);
	if (seen != 9)
		return snprintf(buf, len, "/proc/thread-self/status: %d of 9 lines found", seen);
	return 0;
}

/*
 * Check this thread's credentials against want, both ways; describe the
 * first difference in buf (prefixed with who) and return non-zero, or
 * return 0.
 */
static inline int creds_check(const char *who, const struct creds *want, char *buf, size_t len)
{
	struct creds got;
	char why[400];

	creds_read(&got);
	if (creds_diff(want, &got, why, sizeof(why)) || creds_status_diff(&got, why, sizeof(why)))
		return snprintf(buf, len, "%s: %s", who, why);
	return 0;
}

#endif /* ZDTM_CREDS_H */
