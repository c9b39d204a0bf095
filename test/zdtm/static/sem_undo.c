/*
 * sem_undo - a process with a SysV semaphore undo list (semop with
 * SEM_UNDO), in an IPC namespace of its own.
 *
 * A set of 2 semaphores is made with values 5 and 0; the process takes
 * one from semaphore 0 with SEM_UNDO (value 4, adjustment +1) and adds 2
 * to semaphore 1 without it.  The adjustment itself is not saved (as
 * with CRIU): the driver checks that the dump says so in its log.
 *
 * After SIGTERM: the set is there with values 4 and 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/ipc.h>
#include <sys/sem.h>

#include "zdtm.h"

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

static void check(int id, const unsigned short *want)
{
	unsigned short v[2];
	union semun arg = { .array = v };

	if (semctl(id, 0, GETALL, arg))
		fail("GETALL: %s", test_strerror(errno));
	if (v[0] != want[0] || v[1] != want[1])
		fail("semaphores %u %u, expected %u %u", v[0], v[1], want[0], want[1]);
}

int main(void)
{
	unsigned short init[2] = { 5, 0 }, want[2] = { 4, 2 };
	union semun arg = { .array = init };
	struct sembuf take = { .sem_num = 0, .sem_op = -1, .sem_flg = SEM_UNDO };
	struct sembuf add = { .sem_num = 1, .sem_op = 2 };
	int id;

	test_init();
	id = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
	if (id < 0)
		fail("semget: %s", test_strerror(errno));
	if (semctl(id, 0, SETALL, arg))
		fail("SETALL: %s", test_strerror(errno));
	if (semop(id, &take, 1) || semop(id, &add, 1))
		fail("semop: %s", test_strerror(errno));
	check(id, want);

	test_ready();
	test_wait_stop();

	check(id, want);
	pass();
}
