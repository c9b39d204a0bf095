package ipc

// Semaphore sets of an IPC namespace, in ipcns-sem-ID.img: an
// IpcSemEntry each, followed by the values of its semaphores (16 bits
// each, padded to 8 bytes), as CRIU writes them. The operations in
// progress are not state (a task waiting in semop is restored waiting
// in it again). The SEM_UNDO adjustments of tasks are not saved, as
// CRIU saves none: the kernel shows them nowhere, and reads them only by
// applying them when a task's last reference to its undo list goes.
// HasUndo finds the single-threaded processes that have such a list, so
// that the dump can say it.

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"unsafe"

	ipc_desc "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-desc"
	ipcsem "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-sem"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
)

// kcmpSysVSem is KCMP_SYSVSEM of linux/kcmp.h: do two tasks share their
// SysV semaphore undo list.
const kcmpSysVSem = 6

// HasUndo tells whether task tid has a SysV semaphore undo list. A task
// gets one with its first semop with SEM_UNDO, but also when it is
// cloned with CLONE_SYSVSEM (as every pthread is, and the thread that
// made it): only for a single-threaded process does a list say it used
// SEM_UNDO. The calling thread drops its own list (amber's threads,
// made with CLONE_SYSVSEM, share one) to compare tid's with none.
func HasUndo(tid int) (bool, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Unshare(unix.CLONE_SYSVSEM); err != nil {
		return false, fmt.Errorf("unshare(CLONE_SYSVSEM): %w", err)
	}
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(tid), uintptr(unix.Gettid()), kcmpSysVSem, 0, 0, 0)
	if errno != 0 {
		return false, fmt.Errorf("kcmp(KCMP_SYSVSEM) of task %d: %w", tid, errno)
	}
	return r != 0, nil
}

// semValuesSize is how many bytes the values of n semaphores take in the
// image.
func semValuesSize(n uint32) int { return (int(n)*2 + 7) &^ 7 }

// dumpSem writes ipcns-sem-NSID.img with every semaphore set of the
// calling thread's IPC namespace.
func dumpSem(dir image.Dir, nsID uint32) error {
	sets, err := listSem()
	if err != nil {
		return err
	}
	w, err := image.Create(dir.IpcnsSemPath(nsID), image.IpcnsSem)
	if err != nil {
		return err
	}
	for _, s := range sets {
		e := &ipcsem.IpcSemEntry{Desc: descEntry(s.id, s.ds.Perm), Nsems: proto.Uint32(uint32(s.ds.Nsems))}
		values := make([]uint16, s.ds.Nsems)
		if len(values) > 0 {
			if _, err := semctl(s.id, 0, getAll, unsafe.Pointer(&values[0])); err != nil {
				w.Close()
				return fmt.Errorf("SysV semaphores %d: GETALL: %w", s.id, err)
			}
		}
		buf := make([]byte, semValuesSize(e.GetNsems()))
		for i, v := range values {
			binary.LittleEndian.PutUint16(buf[2*i:], v)
		}
		if err := w.WriteWithPayload(e, buf); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

// restoreSem makes the semaphore sets of ipcns-sem-NSID.img again in the
// calling thread's IPC namespace, a new one.
func restoreSem(dir image.Dir, nsID uint32) error {
	path := dir.IpcnsSemPath(nsID)
	return image.EachEntry(path, image.IpcnsSem, func(r *image.Reader) error {
		e := new(ipcsem.IpcSemEntry)
		buf, err := r.NextWithPayload(e, func() int { return semValuesSize(e.GetNsems()) })
		if err != nil {
			return err
		}
		d := e.GetDesc()
		if d == nil || e.GetNsems() == 0 {
			return fmt.Errorf("%s: a set without its description or semaphores", path)
		}
		if err := makeSem(e, buf); err != nil {
			return fmt.Errorf("%s: SysV semaphores %d (key %#x): %w", path, d.GetId(), d.GetKey(), err)
		}
		return nil
	})
}

// makeSem makes one set with its id, key, owner and mode, and values.
func makeSem(e *ipcsem.IpcSemEntry, buf []byte) error {
	d := e.GetDesc()
	if err := setNextID("sem", d.GetId()); err != nil {
		return err
	}
	id, err := semget(int32(d.GetKey()), int(e.GetNsems()), int(d.GetMode()&0o777)|unix.IPC_CREAT|unix.IPC_EXCL)
	if err != nil {
		return fmt.Errorf("semget: %w", err)
	}
	if id != int(d.GetId()) {
		return fmt.Errorf("semget gave id %d", id)
	}
	var ds semidDS
	if _, err := semctl(id, 0, unix.IPC_STAT, unsafe.Pointer(&ds)); err != nil {
		return fmt.Errorf("IPC_STAT: %w", err)
	}
	setPerm(&ds.Perm, d)
	if _, err := semctl(id, 0, unix.IPC_SET, unsafe.Pointer(&ds)); err != nil {
		return fmt.Errorf("IPC_SET owner %d:%d mode %#o: %w", d.GetUid(), d.GetGid(), d.GetMode()&0o777, err)
	}
	values := make([]uint16, e.GetNsems())
	for i := range values {
		values[i] = binary.LittleEndian.Uint16(buf[2*i:])
	}
	if _, err := semctl(id, 0, setAll, unsafe.Pointer(&values[0])); err != nil {
		return fmt.Errorf("SETALL: %w", err)
	}
	return nil
}

// descEntry describes an object by its id and permissions.
func descEntry(id int, p unix.SysvIpcPerm) *ipc_desc.IpcDescEntry {
	return &ipc_desc.IpcDescEntry{
		Key: proto.Uint32(uint32(p.Key)), Uid: proto.Uint32(p.Uid), Gid: proto.Uint32(p.Gid),
		Cuid: proto.Uint32(p.Cuid), Cgid: proto.Uint32(p.Cgid), Mode: proto.Uint32(p.Mode),
		Id: proto.Uint32(uint32(id)),
	}
}

// setPerm gives p the owner and permissions of d, for IPC_SET (the
// creator's ids stay amber's, as with CRIU: the kernel sets them).
func setPerm(p *unix.SysvIpcPerm, d *ipc_desc.IpcDescEntry) {
	p.Uid, p.Gid, p.Mode = d.GetUid(), d.GetGid(), d.GetMode()&0o777
}
