/*
 * sysv_shm_lock - a SysV shared memory segment locked in memory
 * (SHM_LOCK) comes back locked; one never locked comes back unlocked.
 *
 * Segment 1 (key 0x4c4bPPPP from the PID, 3 pages, mode 0640) is locked
 * with SHM_LOCK, attached at A and its pages 0 and 2 filled.  Segment 2
 * (IPC_PRIVATE, 1 page, mode 0600) is attached at B and filled, not
 * locked.  Both stay attached, so a dump in the host's IPC namespace
 * saves them too.
 *
 * After SIGTERM: segment 1's mode has SHM_LOCKED, segment 2's has not;
 * both keep key, size and permissions; the contents through A and B; a
 * write through A shows in a new attachment.  Then segment 1 is
 * unlocked and both are removed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#include "zdtm.h"

#define PG	4096UL
#define SIZE1	(3 * PG)
#define SIZE2	PG
#define SEED1	0x10c40000ULL
#define SEED2	0x10c41000ULL
#define LATE	0x10c42000ULL

static void check_segment(int id, key_t key, size_t size, int mode, int locked)
{
	struct shmid_ds ds;

	if (shmctl(id, IPC_STAT, &ds))
		fail("IPC_STAT segment %d: %s", id, test_strerror(errno));
	if (ds.shm_perm.__key != key || ds.shm_segsz != size || (ds.shm_perm.mode & 0777) != mode ||
	    !!(ds.shm_perm.mode & SHM_LOCKED) != locked)
		fail("segment %d: key %#x size %zu mode %#o, expected key %#x size %zu mode %#o%s", id,
		     ds.shm_perm.__key, ds.shm_segsz, ds.shm_perm.mode, key, size, mode,
		     locked ? "|SHM_LOCKED" : " unlocked");
}

int main(void)
{
	unsigned char *a, *b, *c;
	key_t key1;
	int id1, id2;

	test_init();
	key1 = 0x4c4b0000 | (getpid() & 0xffff);
	id1 = shmget(key1, SIZE1, IPC_CREAT | IPC_EXCL | 0640);
	id2 = shmget(IPC_PRIVATE, SIZE2, IPC_CREAT | 0600);
	if (id1 < 0 || id2 < 0)
		fail("shmget: %s", test_strerror(errno));
	if (shmctl(id1, SHM_LOCK, NULL))
		fail("SHM_LOCK: %s", test_strerror(errno));
	a = shmat(id1, NULL, 0);
	b = shmat(id2, NULL, 0);
	if (a == (void *)-1 || b == (void *)-1)
		fail("shmat: %s", test_strerror(errno));
	fill_pattern(a, PG, SEED1);
	fill_pattern(a + 2 * PG, PG, SEED1 + 2);
	fill_pattern(b, PG, SEED2);
	check_segment(id1, key1, SIZE1, 0640, 1);
	check_segment(id2, IPC_PRIVATE, SIZE2, 0600, 0);

	test_ready();
	test_wait_stop();

	check_segment(id1, key1, SIZE1, 0640, 1);
	check_segment(id2, IPC_PRIVATE, SIZE2, 0600, 0);
	expect_pattern(a, PG, SEED1, "segment 1 page 0");
	expect_zero(a + PG, PG, "segment 1 page 1");
	expect_pattern(a + 2 * PG, PG, SEED1 + 2, "segment 1 page 2");
	expect_pattern(b, PG, SEED2, "segment 2");
	fill_pattern(a + PG, PG, LATE);
	c = shmat(id1, NULL, SHM_RDONLY);
	if (c == (void *)-1)
		fail("shmat after restore: %s", test_strerror(errno));
	expect_pattern(c + PG, PG, LATE, "segment 1 attached again");

	if (shmctl(id1, SHM_UNLOCK, NULL))
		fail("SHM_UNLOCK: %s", test_strerror(errno));
	if (shmdt(a) || shmdt(b) || shmdt(c))
		fail("shmdt: %s", test_strerror(errno));
	if (shmctl(id1, IPC_RMID, NULL) || shmctl(id2, IPC_RMID, NULL))
		fail("IPC_RMID: %s", test_strerror(errno));
	pass();
}
