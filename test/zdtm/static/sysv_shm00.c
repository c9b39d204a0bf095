/*
 * sysv_shm00 - SysV shared memory segments attached by a process.
 *
 * Segment 1 (key 0x414dPPPP from the PID, mode 0640, 3 pages + 100
 * bytes) is attached read-write at A, its pages 0 and 2 filled (page 1
 * left zero), A's page 1 made read-only, and attached again read-only at
 * B.  It is not removed: when the checkpointed process dies it stays,
 * unattached.  Segment 2 (IPC_PRIVATE, 1 page, mode 0600) is attached at
 * C, filled, and removed (IPC_RMID) while attached: it dies with its last
 * attachment.
 *
 * After SIGTERM: both segments have their ids, key, size and mode, as
 * many attachments as before (a VMA each: 4 and 1), segment 2 is still
 * marked removed (SHM_DEST); the
 * contents through A, B and C; /proc/self/maps shows A as rw-s, r--s,
 * rw-s and B as r--s; a write through A shows through B and through a new
 * attachment.  Then everything is detached and segment 1 removed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

#include "zdtm.h"

#define PG	4096UL
#define SIZE1	(3 * PG + 100)
#define SIZE2	PG
#define SEED1	0x5e5e1000ULL	/* + page */
#define SEED2	0x5e5e2000ULL
#define LATE	0x5e5e3000ULL

static int id1 = -1, id2 = -1;
static key_t key1;
static unsigned char *a, *b, *c;

/* The number of attachments: a VMA each (an mprotect split counts). */
static unsigned long nattch(int id)
{
	struct shmid_ds ds;

	if (shmctl(id, IPC_STAT, &ds))
		fail("IPC_STAT segment %d: %s", id, test_strerror(errno));
	return ds.shm_nattch;
}

static void check_segment(int id, key_t key, size_t size, int mode, unsigned long nattch,
			  int dest)
{
	struct shmid_ds ds;

	if (shmctl(id, IPC_STAT, &ds))
		fail("IPC_STAT segment %d: %s", id, test_strerror(errno));
	if (ds.shm_perm.__key != key || ds.shm_segsz != size ||
	    (ds.shm_perm.mode & 0777) != mode || ds.shm_nattch != nattch ||
	    !!(ds.shm_perm.mode & SHM_DEST) != dest)
		fail("segment %d: key %#x size %zu mode %#o nattch %lu, expected key %#x "
		     "size %zu mode %#o%s nattch %lu", id, ds.shm_perm.__key, ds.shm_segsz,
		     ds.shm_perm.mode, (unsigned long)ds.shm_nattch, key, size, mode,
		     dest ? "|SHM_DEST" : "", nattch);
}

static void check_perms(void *addr, const char *perms)
{
	struct vma *v;
	int n, j;

	n = read_maps(&v);
	for (j = 0; j < n; j++)
		if (v[j].start == (unsigned long)addr)
			break;
	if (j == n)
		fail("no mapping at %p", addr);
	if (strcmp(v[j].perms, perms) || strncmp(v[j].path, "/SYSV", 5))
		fail("mapping at %p is %s \"%s\", expected %s /SYSV...", addr,
		     v[j].perms, v[j].path, perms);
	free(v);
}

static void check_contents(unsigned char *m, const char *what)
{
	char w[96];

	snprintf(w, sizeof(w), "%s page 0", what);
	expect_pattern(m, PG, SEED1, w);
	snprintf(w, sizeof(w), "%s page 1", what);
	expect_zero(m + PG, PG, w);
	snprintf(w, sizeof(w), "%s page 2", what);
	expect_pattern(m + 2 * PG, PG, SEED1 + 2, w);
	snprintf(w, sizeof(w), "%s tail", what);
	expect_zero(m + 3 * PG, PG, w);
}

int main(void)
{
	unsigned char *d;
	unsigned long n1, n2;

	test_init();
	key1 = 0x414d0000 | (getpid() & 0xffff);
	id1 = shmget(key1, SIZE1, IPC_CREAT | IPC_EXCL | 0640);
	id2 = shmget(IPC_PRIVATE, SIZE2, IPC_CREAT | 0600);
	if (id1 < 0 || id2 < 0)
		fail("shmget: %s", test_strerror(errno));
	a = shmat(id1, NULL, 0);
	b = shmat(id1, NULL, SHM_RDONLY);
	c = shmat(id2, NULL, 0);
	if (a == (void *)-1 || b == (void *)-1 || c == (void *)-1)
		fail("shmat: %s", test_strerror(errno));
	fill_pattern(a, PG, SEED1);
	fill_pattern(a + 2 * PG, PG, SEED1 + 2);
	fill_pattern(c, PG, SEED2);
	if (mprotect(a + PG, PG, PROT_READ))
		fail("mprotect: %s", test_strerror(errno));
	if (shmctl(id2, IPC_RMID, NULL))
		fail("IPC_RMID: %s", test_strerror(errno));
	n1 = nattch(id1);
	n2 = nattch(id2);
	if (n1 != 4 || n2 != 1)
		fail("segments attached %lu and %lu times, expected 4 (3 VMAs at A, B) and 1", n1, n2);

	test_ready();
	test_wait_stop();

	check_segment(id1, key1, SIZE1, 0640, n1, 0);
	check_segment(id2, IPC_PRIVATE, SIZE2, 0600, n2, 1);
	check_contents(a, "segment 1 at A");
	check_contents(b, "segment 1 at B");
	expect_pattern(c, PG, SEED2, "segment 2");
	check_perms(a, "rw-s");
	check_perms(a + PG, "r--s");
	check_perms(a + 2 * PG, "rw-s");
	check_perms(b, "r--s");

	fill_pattern(a + 2 * PG, PG, LATE);
	expect_pattern(b + 2 * PG, PG, LATE, "segment 1 at B after a write through A");
	d = shmat(id1, NULL, SHM_RDONLY);
	if (d == (void *)-1)
		fail("shmat after restore: %s", test_strerror(errno));
	expect_pattern(d + 2 * PG, PG, LATE, "segment 1 attached again");

	if (shmdt(a) || shmdt(b) || shmdt(c) || shmdt(d))
		fail("shmdt: %s", test_strerror(errno));
	if (shmctl(id1, IPC_RMID, NULL))
		fail("IPC_RMID segment %d: %s", id1, test_strerror(errno));
	pass();
}
