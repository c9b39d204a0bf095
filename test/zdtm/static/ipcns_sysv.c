/*
 * ipcns_sysv - the System V objects of an IPC namespace of the tree's own
 * come back with it: shared memory segments with their contents,
 * semaphore sets with their values, message queues with their messages,
 * and the namespace's settings (CRIU's ipcns-shm, -sem, -msg, -var).
 *
 * The driver starts it with CLONE_NEWIPC; it refuses to run in its
 * parent's IPC namespace.  Each object is made with a chosen id (through
 * kernel.*_next_id), and is checked after restore by that id: its key,
 * owner, creator, mode, size and contents.
 *
 *   - shm 1 (key SHM1_KEY, id SHM1_ID, mode 0640, 3 pages + 100 bytes):
 *     pages 0 and 2 filled, page 1 left zero; attached by the parent at A
 *     before the fork, so the child has it too.  After restore the parent
 *     writes through A and the child must see it through its own copy of
 *     the attachment, and answer through it; a new attachment sees both.
 *   - shm 2 (IPC_PRIVATE, 2 pages, mode 0600) attached at B (so by both
 *     tasks), filled, then
 *     removed (IPC_RMID) while attached: it must still be marked SHM_DEST.
 *   - shm 3 (key SHM3_KEY, 1 page, owner 1234:5678, mode 0604), filled
 *     and attached by nobody: only the namespace holds it.
 *   - shm 4 (key SHM4_KEY, 64 pages) unattached with only page 40 written.
 *   - sem 1 (key SEM1_KEY, id SEM1_ID, 5 semaphores, owner 1234:5678, mode
 *     0660) with values 0 1 7 32767 2; sem 2 (IPC_PRIVATE, 1 semaphore)
 *     holding 3.
 *   - msg 1 (key MSG1_KEY, id MSG1_ID, mode 0620, qbytes 12000) holding, in
 *     order: type 1 "hello", type 5 a 5000-byte pattern, type 2 an empty
 *     message, type 3 bytes with zeroes in them; msg 2 (IPC_PRIVATE)
 *     empty.
 *   - settings: kernel.msgmax 9000, kernel.sem "300 32010 40 140",
 *     kernel.shmmni 3000, and kernel.shm_next_id 999 set last and not
 *     used yet: the next segment made must get id 999.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define PG 4096UL

#define SHM1_KEY 0x1badc0de
#define SHM1_ID 4242
#define SHM1_SIZE (3 * PG + 100)
#define SHM2_SIZE (2 * PG)
#define SHM3_KEY 0x1badc0df
#define SHM4_KEY 0x1badc0e0
#define SHM4_SIZE (64 * PG)
#define SEM1_KEY 0x5e3a0001
#define SEM1_ID 300
#define MSG1_KEY 0x3e550001
#define MSG1_ID 777
#define MSG1_QBYTES 12000
#define NEXT_SHM_ID 999

#define SEED1 0x1e1e0000ULL
#define SEED2 0x2e2e0000ULL
#define SEED3 0x3e3e0000ULL
#define SEED4 0x4e4e0000ULL
#define SEED_BIG 0x5e5e0000ULL

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

static const unsigned short sem1_values[5] = { 0, 1, 7, 32767, 2 };

static const struct {
	const char *path, *value;
} sysctls[] = {
	{ "/proc/sys/kernel/msgmax", "9000" },
	{ "/proc/sys/kernel/sem", "300\t32010\t40\t140" },
	{ "/proc/sys/kernel/shmmni", "3000" },
};

struct message {
	long mtype;
	char mtext[5000];
};

static int shm2_id, shm3_id, shm4_id, sem2_id, msg2_id;
static unsigned char *a, *b;
static unsigned char binary[] = { 'a', 0, 'b', 0, 0, 'c', 0xff };

static void write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY);
	ssize_t n = strlen(value);

	if (fd < 0 || write(fd, value, n) != n)
		fail("write %s to %s: %s", value, path, test_strerror(errno));
	close(fd);
}

static void expect_file(const char *path, const char *want)
{
	char buf[128];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		fail("open %s: %s", path, test_strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		fail("read %s: %s", path, test_strerror(errno));
	buf[n] = 0;
	if (n > 0 && buf[n - 1] == '\n')
		buf[n - 1] = 0;
	if (strcmp(buf, want))
		fail("%s is \"%s\", want \"%s\"", path, buf, want);
}

static void next_id(const char *kind, int id)
{
	char path[64], value[16];

	snprintf(path, sizeof(path), "/proc/sys/kernel/%s_next_id", kind);
	snprintf(value, sizeof(value), "%d", id);
	write_file(path, value);
}

static void own_ipc_namespace(void)
{
	char b[64];
	struct stat sa, sb;

	snprintf(b, sizeof(b), "/proc/%d/ns/ipc", getppid());
	if (stat("/proc/self/ns/ipc", &sa) || stat(b, &sb))
		fail("stat the ipc namespaces: %s", test_strerror(errno));
	if (sa.st_ino == sb.st_ino)
		fail("not in an IPC namespace of its own (start it with CLONE_NEWIPC)");
}

/* check_perm fails unless perm is as made: owner, creator root, mode. */
static void check_perm(const char *what, struct ipc_perm *p, key_t key, uid_t uid, gid_t gid, int mode)
{
	if (p->__key != key || p->uid != uid || p->gid != gid || p->cuid != 0 || p->cgid != 0 ||
	    (p->mode & 0777) != mode)
		fail("%s: key %#x owner %u:%u creator %u:%u mode %#o, want key %#x owner %u:%u creator 0:0 mode %#o",
		     what, p->__key, p->uid, p->gid, p->cuid, p->cgid, p->mode & 0777, key, uid, gid, mode);
}

static void check_shm(const char *what, int id, key_t key, size_t size, uid_t uid, gid_t gid, int mode,
		      unsigned long nattch, int dest)
{
	struct shmid_ds ds;

	if (shmctl(id, IPC_STAT, &ds))
		fail("%s: IPC_STAT segment %d: %s", what, id, test_strerror(errno));
	check_perm(what, &ds.shm_perm, key, uid, gid, mode);
	if (ds.shm_segsz != size || ds.shm_nattch != nattch || !!(ds.shm_perm.mode & SHM_DEST) != dest)
		fail("%s: size %zu, %lu attachments, removed %d; want %zu, %lu, %d", what, ds.shm_segsz,
		     (unsigned long)ds.shm_nattch, !!(ds.shm_perm.mode & SHM_DEST), size, nattch, dest);
}

/* The contents of segment id, through a new read-only attachment. */
static void check_shm_contents(int id, void (*check)(const unsigned char *))
{
	unsigned char *p = shmat(id, NULL, SHM_RDONLY);

	if (p == (void *)-1)
		fail("shmat %d: %s", id, test_strerror(errno));
	check(p);
	shmdt(p);
}

static void check_shm1(const unsigned char *p)
{
	expect_pattern(p, PG, SEED1, "shm 1 page 0");
	expect_zero(p + PG, PG, "shm 1 page 1");
	expect_pattern(p + 2 * PG, PG + 100, SEED1 + 2, "shm 1 pages 2-3");
}

static void check_shm2(const unsigned char *p) { expect_pattern(p, SHM2_SIZE, SEED2, "shm 2"); }
static void check_shm3(const unsigned char *p) { expect_pattern(p, PG, SEED3, "shm 3"); }

static void check_shm4(const unsigned char *p)
{
	expect_zero(p, 40 * PG, "shm 4 before page 40");
	expect_pattern(p + 40 * PG, PG, SEED4, "shm 4 page 40");
	expect_zero(p + 41 * PG, 23 * PG, "shm 4 after page 40");
}

static void check_sem(const char *what, int id, key_t key, uid_t uid, gid_t gid, int mode,
		      const unsigned short *values, int n)
{
	struct semid_ds ds;
	unsigned short got[8];
	union semun arg = { .buf = &ds };
	int i;

	if (semctl(id, 0, IPC_STAT, arg))
		fail("%s: IPC_STAT set %d: %s", what, id, test_strerror(errno));
	check_perm(what, &ds.sem_perm, key, uid, gid, mode);
	if (ds.sem_nsems != (unsigned long)n)
		fail("%s: %lu semaphores, want %d", what, (unsigned long)ds.sem_nsems, n);
	arg.array = got;
	if (semctl(id, 0, GETALL, arg))
		fail("%s: GETALL: %s", what, test_strerror(errno));
	for (i = 0; i < n; i++)
		if (got[i] != values[i])
			fail("%s: semaphore %d is %u, want %u", what, i, got[i], values[i]);
}

static void check_msg_queue(const char *what, int id, key_t key, int mode, unsigned long qbytes,
			    unsigned long qnum, unsigned long cbytes)
{
	struct msqid_ds ds;

	if (msgctl(id, IPC_STAT, &ds))
		fail("%s: IPC_STAT queue %d: %s", what, id, test_strerror(errno));
	check_perm(what, &ds.msg_perm, key, 0, 0, mode);
	if (ds.msg_qbytes != qbytes || ds.msg_qnum != qnum || ds.__msg_cbytes != cbytes)
		fail("%s: qbytes %lu, %lu messages, %lu bytes; want %lu, %lu, %lu", what, (unsigned long)ds.msg_qbytes,
		     (unsigned long)ds.msg_qnum, (unsigned long)ds.__msg_cbytes, qbytes, qnum, cbytes);
}

/* receive fails unless the next message of queue id has type and the len bytes of want. */
static void receive(int id, long type, const void *want, size_t len, const char *what)
{
	static struct message m;
	ssize_t n = msgrcv(id, &m, sizeof(m.mtext), 0, IPC_NOWAIT);

	if (n < 0)
		fail("%s: msgrcv: %s", what, test_strerror(errno));
	if (m.mtype != type || (size_t)n != len || memcmp(m.mtext, want, len))
		fail("%s: type %ld, %zd bytes; want type %ld, %zu bytes of its own", what, m.mtype, n, type, len);
}

static void msg_send(int id, long type, const void *data, size_t len)
{
	static struct message m;

	m.mtype = type;
	memcpy(m.mtext, data, len);
	if (msgsnd(id, &m, len, IPC_NOWAIT))
		fail("msgsnd type %ld, %zu bytes: %s", type, len, test_strerror(errno));
}

static void setup(void)
{
	union semun arg;
	struct shmid_ds sds;
	struct semid_ds semds;
	struct msqid_ds mds;
	unsigned short one = 3;
	unsigned char *p;
	static char big[5000];
	int id;
	unsigned i;

	for (i = 0; i < sizeof(sysctls) / sizeof(sysctls[0]); i++)
		write_file(sysctls[i].path, sysctls[i].value);

	next_id("shm", SHM1_ID);
	id = shmget(SHM1_KEY, SHM1_SIZE, IPC_CREAT | IPC_EXCL | 0640);
	if (id != SHM1_ID)
		fail("shmget 1 gave %d, want %d: %s", id, SHM1_ID, test_strerror(errno));
	a = shmat(id, NULL, 0);
	if (a == (void *)-1)
		fail("shmat 1: %s", test_strerror(errno));
	fill_pattern(a, PG, SEED1);
	fill_pattern(a + 2 * PG, PG + 100, SEED1 + 2);

	shm2_id = shmget(IPC_PRIVATE, SHM2_SIZE, 0600);
	if (shm2_id < 0 || (b = shmat(shm2_id, NULL, 0)) == (void *)-1)
		fail("shm 2: %s", test_strerror(errno));
	fill_pattern(b, SHM2_SIZE, SEED2);
	if (shmctl(shm2_id, IPC_RMID, NULL))
		fail("IPC_RMID shm 2: %s", test_strerror(errno));

	shm3_id = shmget(SHM3_KEY, PG, IPC_CREAT | IPC_EXCL | 0604);
	if (shm3_id < 0 || (p = shmat(shm3_id, NULL, 0)) == (void *)-1)
		fail("shm 3: %s", test_strerror(errno));
	fill_pattern(p, PG, SEED3);
	shmdt(p);
	if (shmctl(shm3_id, IPC_STAT, &sds))
		fail("IPC_STAT shm 3: %s", test_strerror(errno));
	sds.shm_perm.uid = 1234;
	sds.shm_perm.gid = 5678;
	if (shmctl(shm3_id, IPC_SET, &sds))
		fail("IPC_SET shm 3: %s", test_strerror(errno));

	shm4_id = shmget(SHM4_KEY, SHM4_SIZE, IPC_CREAT | IPC_EXCL | 0600);
	if (shm4_id < 0 || (p = shmat(shm4_id, NULL, 0)) == (void *)-1)
		fail("shm 4: %s", test_strerror(errno));
	fill_pattern(p + 40 * PG, PG, SEED4);
	shmdt(p);

	next_id("sem", SEM1_ID);
	id = semget(SEM1_KEY, 5, IPC_CREAT | IPC_EXCL | 0660);
	if (id != SEM1_ID)
		fail("semget 1 gave %d, want %d: %s", id, SEM1_ID, test_strerror(errno));
	arg.array = (unsigned short *)sem1_values;
	if (semctl(id, 0, SETALL, arg))
		fail("SETALL sem 1: %s", test_strerror(errno));
	arg.buf = &semds;
	if (semctl(id, 0, IPC_STAT, arg))
		fail("IPC_STAT sem 1: %s", test_strerror(errno));
	semds.sem_perm.uid = 1234;
	semds.sem_perm.gid = 5678;
	if (semctl(id, 0, IPC_SET, arg))
		fail("IPC_SET sem 1: %s", test_strerror(errno));
	sem2_id = semget(IPC_PRIVATE, 1, 0600);
	arg.array = &one;
	if (sem2_id < 0 || semctl(sem2_id, 0, SETALL, arg))
		fail("sem 2: %s", test_strerror(errno));

	next_id("msg", MSG1_ID);
	id = msgget(MSG1_KEY, IPC_CREAT | IPC_EXCL | 0620);
	if (id != MSG1_ID)
		fail("msgget 1 gave %d, want %d: %s", id, MSG1_ID, test_strerror(errno));
	if (msgctl(id, IPC_STAT, &mds))
		fail("IPC_STAT msg 1: %s", test_strerror(errno));
	mds.msg_qbytes = MSG1_QBYTES;
	if (msgctl(id, IPC_SET, &mds))
		fail("IPC_SET msg 1: %s", test_strerror(errno));
	fill_pattern(big, sizeof(big), SEED_BIG);
	msg_send(id, 1, "hello", 5);
	msg_send(id, 5, big, sizeof(big));
	msg_send(id, 2, "", 0);
	msg_send(id, 3, binary, sizeof(binary));
	msg2_id = msgget(IPC_PRIVATE, 0600);
	if (msg2_id < 0)
		fail("msg 2: %s", test_strerror(errno));

	next_id("shm", NEXT_SHM_ID);
}

/* check fails unless every object and setting is as setup left it. */
static void check(void)
{
	static char big[5000];
	unsigned short three = 3;
	unsigned i;

	for (i = 0; i < sizeof(sysctls) / sizeof(sysctls[0]); i++)
		expect_file(sysctls[i].path, sysctls[i].value);
	expect_file("/proc/sys/kernel/shm_next_id", "999");

	/* The parent's and the child's attachments of shm 1, and shm 2's. */
	check_shm("shm 1", SHM1_ID, SHM1_KEY, SHM1_SIZE, 0, 0, 0640, 2, 0);
	if (shmget(SHM1_KEY, 0, 0) != SHM1_ID)
		fail("shmget of key %#x does not give id %d: %s", SHM1_KEY, SHM1_ID, test_strerror(errno));
	check_shm("shm 2", shm2_id, IPC_PRIVATE, SHM2_SIZE, 0, 0, 0600, 2, 1);
	check_shm("shm 3", shm3_id, SHM3_KEY, PG, 1234, 5678, 0604, 0, 0);
	check_shm("shm 4", shm4_id, SHM4_KEY, SHM4_SIZE, 0, 0, 0600, 0, 0);
	check_shm1(a);
	check_shm2(b);
	check_shm_contents(SHM1_ID, check_shm1);
	check_shm_contents(shm3_id, check_shm3);
	check_shm_contents(shm4_id, check_shm4);

	check_sem("sem 1", SEM1_ID, SEM1_KEY, 1234, 5678, 0660, sem1_values, 5);
	check_sem("sem 2", sem2_id, IPC_PRIVATE, 0, 0, 0600, &three, 1);

	check_msg_queue("msg 1", MSG1_ID, MSG1_KEY, 0620, MSG1_QBYTES, 4, 5 + sizeof(big) + sizeof(binary));
	check_msg_queue("msg 2", msg2_id, IPC_PRIVATE, 0600, 16384, 0, 0);
}

int main(void)
{
	int ready[2], go[2], status;
	struct sembuf down = { .sem_num = 2, .sem_op = -7, .sem_flg = IPC_NOWAIT };
	static char big[5000];
	pid_t child;
	char c;
	int id;

	test_init();
	own_ipc_namespace();
	setup();
	if (pipe(ready) || pipe(go))
		fail("pipe: %s", test_strerror(errno));
	child = fork();
	if (child < 0)
		fail("fork: %s", test_strerror(errno));
	if (child == 0) {
		/* After restore: the parent wrote 0xab at a[PG]; answer 0xcd. */
		close(ready[0]);
		close(go[1]);
		if (write(ready[1], "x", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(2);
		if (a[PG] != 0xab)
			_exit(3);
		a[PG + 1] = 0xcd;
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);
	if (read(ready[0], &c, 1) != 1)
		fail("child did not start");
	check();
	test_ready();
	test_wait_stop();
	check();

	/* Attachments are shared with the segment and between tasks. */
	a[PG] = 0xab;
	if (write(go[1], "x", 1) != 1 || waitpid(child, &status, 0) != child)
		fail("wake child %d: %s", child, test_strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("child failed its check (status %#x)", status);
	if (a[PG + 1] != 0xcd)
		fail("the child's write through its attachment of shm 1 is not in the parent's");
	{
		unsigned char *p = shmat(SHM1_ID, NULL, SHM_RDONLY);

		if (p == (void *)-1 || p[PG] != 0xab || p[PG + 1] != 0xcd)
			fail("a new attachment of shm 1 does not see the writes");
		shmdt(p);
	}

	/* The objects work: semop, messages in order, next id. */
	if (semop(SEM1_ID, &down, 1) || semctl(SEM1_ID, 2, GETVAL) != 0)
		fail("semop on sem 1: %s", test_strerror(errno));
	fill_pattern(big, sizeof(big), SEED_BIG);
	receive(MSG1_ID, 1, "hello", 5, "message 1");
	receive(MSG1_ID, 5, big, sizeof(big), "message 2");
	receive(MSG1_ID, 2, "", 0, "message 3");
	receive(MSG1_ID, 3, binary, sizeof(binary), "message 4");
	if (msgrcv(MSG1_ID, big, sizeof(big), 0, IPC_NOWAIT) >= 0 || errno != ENOMSG)
		fail("msg 1 holds more than its 4 messages");
	id = shmget(IPC_PRIVATE, PG, 0600);
	if (id != NEXT_SHM_ID)
		fail("a new segment got id %d, want %d (kernel.shm_next_id)", id, NEXT_SHM_ID);
	pass();
}
