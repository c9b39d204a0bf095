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

// ReadVec reads many ranges of the task at once into consecutive parts of
// buf with one process_vm_readv; the ranges' lengths must add up to
// len(buf). It reports how many bytes were read: less than len(buf) when
// a range could not be read (for example PROT_NONE), which the caller then
// reads with ReadMem.
func (t *Task) ReadVec(remote []unix.RemoteIovec, buf []byte) (int, error) {
	if len(buf) == 0 {
		return 0, nil
	}
	local := []unix.Iovec{{Base: (*byte)(unsafe.Pointer(&buf[0]))}}
	local[0].SetLen(len(buf))
	n, err := unix.ProcessVMReadv(t.Pid, local, remote, 0)
	if err != nil && n <= 0 {
		return 0, fmt.Errorf("pid %d: process_vm_readv: %w", t.Pid, err)
	}
	return n, nil
}
