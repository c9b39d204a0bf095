package compel

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ReadMem copies len(buf) bytes at addr in the task into buf. It uses
// process_vm_readv and falls back to /proc/PID/mem, which can also read
// pages the task itself may not (PROT_NONE).
func (t *Task) ReadMem(addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &buf[0]}}
	local[0].SetLen(len(buf))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
	n, err := unix.ProcessVMReadv(t.Pid, local, remote, 0)
	if err == nil && n == len(buf) {
		return nil
	}
	return t.procMem(addr, buf, false)
}

// WriteMem copies buf into the task at addr.
func (t *Task) WriteMem(addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &buf[0]}}
	local[0].SetLen(len(buf))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
	n, err := unix.ProcessVMWritev(t.Pid, local, remote, 0)
	if err == nil && n == len(buf) {
		return nil
	}
	return t.procMem(addr, buf, true)
}

// procMem reads or writes through /proc/PID/mem, opened raw: os.OpenFile
// would offer the descriptor to Go's poller first, five wasted calls.
func (t *Task) procMem(addr uint64, buf []byte, write bool) error {
	path := fmt.Sprintf("/proc/%d/mem", t.Pid)
	op, flag := "read", unix.O_RDONLY
	if write {
		op, flag = "write", unix.O_WRONLY
	}
	fd, err := unix.Open(path, flag|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("pid %d: open %s: %w", t.Pid, path, err)
	}
	defer unix.Close(fd)
	// Addresses above 2^63 do not fit an int64 offset; user space never
	// has them on x86-64.
	for done := 0; done < len(buf); {
		var n int
		if write {
			n, err = unix.Pwrite(fd, buf[done:], int64(addr)+int64(done))
		} else {
			n, err = unix.Pread(fd, buf[done:], int64(addr)+int64(done))
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return fmt.Errorf("pid %d: %s %#x+%d via %s: %d bytes: %v", t.Pid, op, addr, len(buf), path, done, err)
		}
		done += n
	}
	return nil
}

// ReadVecs reads remote ranges into the local buffers of the same
// lengths with one process_vm_readv and reports how many bytes it read:
// fewer than asked when a range could not be read (PROT_NONE), which the
// caller then reads with ReadProcMem.
//
// process_vm_readv pins the pages it reads, and the kernel unshares
// (copies) an anonymous page another process also maps before pinning it:
// use it only on pages the task maps alone, or the dump breaks the
// copy-on-write sharing of the very tree it dumps.
func (t *Task) ReadVecs(remote []unix.RemoteIovec, local [][]byte) (int, error) {
	if len(remote) == 0 {
		return 0, nil
	}
	iov := make([]unix.Iovec, len(local))
	for i, b := range local {
		iov[i].Base = (*byte)(unsafe.Pointer(&b[0]))
		iov[i].SetLen(len(b))
	}
	n, err := unix.ProcessVMReadv(t.Pid, iov, remote, 0)
	if err != nil && n <= 0 {
		return 0, fmt.Errorf("pid %d: process_vm_readv: %w", t.Pid, err)
	}
	return n, nil
}

// ReadProcMem reads task memory through /proc/PID/mem, which neither pins
// nor unshares pages, and reads PROT_NONE memory too.
func (t *Task) ReadProcMem(addr uint64, buf []byte) error { return t.procMem(addr, buf, false) }

func uintptrOf(p *uint32) uintptr { return uintptr(unsafe.Pointer(p)) }
