package compel

import (
	"fmt"
	"os"
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

func (t *Task) procMem(addr uint64, buf []byte, write bool) error {
	path := fmt.Sprintf("/proc/%d/mem", t.Pid)
	flag := os.O_RDONLY
	if write {
		flag = os.O_WRONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return fmt.Errorf("pid %d: %w", t.Pid, err)
	}
	defer f.Close()
	// Addresses above 2^63 do not fit an int64 offset; user space never
	// has them on x86-64.
	var n int
	if write {
		n, err = f.WriteAt(buf, int64(addr))
	} else {
		n, err = f.ReadAt(buf, int64(addr))
	}
	if err != nil || n != len(buf) {
		return fmt.Errorf("pid %d: %s %#x+%d via %s: %d bytes: %v", t.Pid, map[bool]string{true: "write", false: "read"}[write], addr, len(buf), path, n, err)
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
