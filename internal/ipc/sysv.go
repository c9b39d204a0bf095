package ipc

// The system calls of System V semaphores and message queues, which
// golang.org/x/sys/unix does not wrap, and the listing of every object
// of a kind in the calling thread's IPC namespace.

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Commands and flags of linux/ipc.h, shm.h, sem.h and msg.h.
const (
	shmStat = 13 // SHM_STAT: IPC_STAT by index, returns the id
	shmInfo = 14 // SHM_INFO: returns the highest index in use
	semStat = 18
	semInfo = 19
	msgStat = 11
	msgInfo = 12
	getAll  = 13 // GETALL: every value of a semaphore set
	setAll  = 17 // SETALL

	msgCopy = 0o40000 // MSG_COPY: msgrcv copies the message at an index, leaving it queued
)

// semidDS is struct semid64_ds of x86-64.
type semidDS struct {
	Perm  unix.SysvIpcPerm
	Otime int64
	_     uint64
	Ctime int64
	_     uint64
	Nsems uint64
	_     [2]uint64
}

// msqidDS is struct msqid64_ds of x86-64.
type msqidDS struct {
	Perm                 unix.SysvIpcPerm
	Stime, Rtime, Ctime  int64
	Cbytes, Qnum, Qbytes uint64
	Lspid, Lrpid         int32
	_                    [2]uint64
}

func semctl(id, num, cmd int, arg unsafe.Pointer) (int, error) {
	r, _, errno := unix.Syscall6(unix.SYS_SEMCTL, uintptr(id), uintptr(num), uintptr(cmd), uintptr(arg), 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

func semget(key int32, nsems, flags int) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_SEMGET, uintptr(key), uintptr(nsems), uintptr(flags))
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

func msgctl(id, cmd int, ds *msqidDS) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_MSGCTL, uintptr(id), uintptr(cmd), uintptr(unsafe.Pointer(ds)))
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

func msgget(key int32, flags int) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_MSGGET, uintptr(key), uintptr(flags), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// msgsnd sends buf, the message's type (8 bytes) and its text, without
// waiting.
func msgsnd(id int, buf []byte) error {
	_, _, errno := unix.Syscall6(unix.SYS_MSGSND, uintptr(id), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)-8), unix.IPC_NOWAIT, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// msgrcv receives into buf (type, then text) and returns the text's
// length.
func msgrcv(id int, buf []byte, typ int64, flags int) (int, error) {
	r, _, errno := unix.Syscall6(unix.SYS_MSGRCV, uintptr(id), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)-8), uintptr(typ), uintptr(flags), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// object is one System V object found by its index: its id and what
// *_STAT said of it.
type object[DS any] struct {
	id int
	ds DS
}

// list returns the objects of one kind in the calling thread's IPC
// namespace, in the order of their indexes: info returns the highest
// index in use, stat the id at an index (EINVAL where there is none).
func list[DS any](kind string, info func() (int, error), stat func(index int, ds *DS) (int, error)) ([]object[DS], error) {
	top, err := info()
	if err != nil {
		return nil, fmt.Errorf("%s: list: %w", kind, err)
	}
	var out []object[DS]
	for i := 0; i <= top; i++ {
		var o object[DS]
		o.id, err = stat(i, &o.ds)
		switch {
		case errors.Is(err, unix.EINVAL):
			continue
		case err != nil:
			return nil, fmt.Errorf("%s: index %d: %w", kind, i, err)
		}
		out = append(out, o)
	}
	return out, nil
}

// listShm lists the shared memory segments.
func listShm() ([]object[unix.SysvShmDesc], error) {
	return list("SysV shared memory",
		func() (int, error) {
			var info unix.SysvShmDesc // larger than struct shm_info
			return unix.SysvShmCtl(0, shmInfo, &info)
		},
		func(i int, ds *unix.SysvShmDesc) (int, error) { return unix.SysvShmCtl(i, shmStat, ds) })
}

// listSem lists the semaphore sets.
func listSem() ([]object[semidDS], error) {
	return list("SysV semaphores",
		func() (int, error) {
			var info semidDS // larger than struct seminfo
			return semctl(0, 0, semInfo, unsafe.Pointer(&info))
		},
		func(i int, ds *semidDS) (int, error) { return semctl(i, 0, semStat, unsafe.Pointer(ds)) })
}

// listMsg lists the message queues.
func listMsg() ([]object[msqidDS], error) {
	return list("SysV message queues",
		func() (int, error) {
			var info msqidDS // larger than struct msginfo
			return msgctl(0, msgInfo, &info)
		},
		func(i int, ds *msqidDS) (int, error) { return msgctl(i, msgStat, ds) })
}

// setNextID makes the next object of a kind ("shm", "sem", "msg") that
// the calling thread's IPC namespace creates take id.
func setNextID(kind string, id uint32) error {
	name := "/proc/sys/kernel/" + kind + "_next_id"
	if err := os.WriteFile(name, []byte(strconv.FormatUint(uint64(id), 10)), 0); err != nil {
		return fmt.Errorf("choose the id %d: %w", id, err)
	}
	return nil
}

// sysctl reads a number of the calling thread's IPC namespace, name a
// path under /proc/sys ("kernel/msgmnb", "fs/mqueue/msg_max").
func sysctl(name string) (uint64, error) {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/sys/%s: %w", name, err)
	}
	return n, nil
}

// raiseSysctl makes the setting name (as sysctl's) at least n; the
// namespace's own value is written back once every object is made
// (package namespaces).
func raiseSysctl(name string, n uint64) error {
	cur, err := sysctl(name)
	if err != nil || cur >= n {
		return err
	}
	if err := os.WriteFile("/proc/sys/"+name, []byte(strconv.FormatUint(n, 10)), 0); err != nil {
		return fmt.Errorf("raise %s to %d: %w", strings.ReplaceAll(name, "/", "."), n, err)
	}
	return nil
}
