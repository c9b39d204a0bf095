/*
 * sysv_shm_huge - a SysV shared memory segment of huge pages
 * (SHM_HUGETLB, the default huge page size), what CRIU's shm-hugetlb
 * checks, and more.
 *
 * The segment (key 0x4855PPPP from the PID, mode 0600) is two huge pages
 * and 100 bytes long: three huge pages.  It is attached at A, 4 KiB
 * filled at offsets 0, H (H: the huge page size) and 2H, and attached
 * again read-only at B.
 *
 * After SIGTERM: the segment keeps its key, size and mode; A and B are
 * hugetlb mappings ("ht" in VmFlags, KernelPageSize H) of the same
 * device as before, B read-only; the contents through A and B, the rest
 * of the first huge page zero; a write through A shows through B.  Then
 * it is detached and removed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#include "zdtm.h"

#define PG	4096UL
#define SEED	0x48550000ULL	/* + huge page index */
#define LATE	0x48551000ULL

struct mapline {
	unsigned int major, minor;
	char perms[5];
	unsigned long kpage;	/* KernelPageSize, bytes */
	int ht;			/* "ht" in VmFlags */
	int found;
};

/* The smaps entry of the mapping starting at addr. */
static struct mapline mapline(void *addr)
{
	struct mapline m = { 0 };
	char line[512];
	int in = 0;
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		fail("open smaps: %s", test_strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		unsigned long start, end, kb;
		char perms[5];
		unsigned int maj, min;

		if (sscanf(line, "%lx-%lx %4s %*x %x:%x", &start, &end, perms, &maj, &min) == 5) {
			in = start == (unsigned long)addr;
			if (in) {
				m.found = 1;
				m.major = maj;
				m.minor = min;
				memcpy(m.perms, perms, 5);
			}
		} else if (in && sscanf(line, "KernelPageSize: %lu kB", &kb) == 1) {
			m.kpage = kb * 1024;
		} else if (in && !strncmp(line, "VmFlags:", 8)) {
			m.ht = strstr(line, " ht") != NULL;
		}
	}
	fclose(f);
	if (!m.found)
		fail("no mapping at %p", addr);
	return m;
}

static unsigned long huge_page_size(void)
{
	char line[256];
	unsigned long kb = 0;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		fail("open meminfo: %s", test_strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Hugepagesize: %lu kB", &kb) == 1)
			break;
	fclose(f);
	if (!kb)
		fail("no Hugepagesize in /proc/meminfo");
	return kb * 1024;
}

static void check_map(void *addr, const char *perms, struct mapline *was, unsigned long hp)
{
	struct mapline m = mapline(addr);

	if (!m.ht || m.kpage != hp || strcmp(m.perms, perms) ||
	    (was && (m.major != was->major || m.minor != was->minor)))
		fail("mapping at %p: %s ht %d KernelPageSize %lu dev %x:%x, expected %s ht 1 %lu%s", addr,
		     m.perms, m.ht, m.kpage, m.major, m.minor, perms, hp, was ? " same dev" : "");
}

int main(void)
{
	unsigned char *a, *b;
	struct mapline was;
	struct shmid_ds ds;
	unsigned long hp;
	size_t size;
	key_t key;
	int id;

	test_init();
	hp = huge_page_size();
	size = 2 * hp + 100;
	key = 0x48550000 | (getpid() & 0xffff);
	id = shmget(key, size, IPC_CREAT | IPC_EXCL | SHM_HUGETLB | 0600);
	if (id < 0)
		fail("shmget SHM_HUGETLB: %s", test_strerror(errno));
	a = shmat(id, NULL, 0);
	b = shmat(id, NULL, SHM_RDONLY);
	if (a == (void *)-1 || b == (void *)-1)
		fail("shmat: %s", test_strerror(errno));
	fill_pattern(a, PG, SEED);
	fill_pattern(a + hp, PG, SEED + 1);
	fill_pattern(a + 2 * hp, PG, SEED + 2);
	check_map(a, "rw-s", NULL, hp);
	was = mapline(a);

	test_ready();
	test_wait_stop();

	if (shmctl(id, IPC_STAT, &ds))
		fail("IPC_STAT: %s", test_strerror(errno));
	if (ds.shm_perm.__key != key || ds.shm_segsz != size || (ds.shm_perm.mode & 0777) != 0600 ||
	    ds.shm_nattch != 2)
		fail("segment %d: key %#x size %zu mode %#o nattch %lu, expected key %#x size %zu mode 0600 nattch 2",
		     id, ds.shm_perm.__key, ds.shm_segsz, ds.shm_perm.mode, (unsigned long)ds.shm_nattch, key, size);
	check_map(a, "rw-s", &was, hp);
	check_map(b, "r--s", &was, hp);
	expect_pattern(a, PG, SEED, "huge page 0");
	expect_zero(a + PG, hp - PG, "rest of huge page 0");
	expect_pattern(a + hp, PG, SEED + 1, "huge page 1");
	expect_pattern(b + 2 * hp, PG, SEED + 2, "huge page 2 through B");
	fill_pattern(a + hp + PG, PG, LATE);
	expect_pattern(b + hp + PG, PG, LATE, "a write through A, through B");

	if (shmdt(a) || shmdt(b))
		fail("shmdt: %s", test_strerror(errno));
	if (shmctl(id, IPC_RMID, NULL))
		fail("IPC_RMID: %s", test_strerror(errno));
	pass();
}
