package compel

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Regs are the general purpose registers of an x86-64 thread.
type Regs = unix.PtraceRegs

// x86 flags amber's code must not run with: the trap flag, which would
// stop it after every instruction, and the direction flag.
const (
	flagTF = 0x100
	flagDF = 0x400
)

// enter sets r to run amber's code at rip: not as a system call the task
// was in (orig_rax -1, so that the kernel's syscall restart does not
// rewrite the registers), and with flags in a known state, as CRIU's
// compel does. A trap flag can be left set by the kernel itself: a task
// single-stepped through a system call that stops for a ptrace event
// (clone3's) keeps it as its own when the bytes after the `syscall` read
// as popf or iret (is_setting_trap_flag), and then traps after the first
// instruction of whatever amber runs next in it.
func enter(r *Regs, rip uint64) {
	r.Rip, r.Orig_rax = rip, ^uint64(0)
	r.Eflags &^= flagTF | flagDF
}

// maxXState bounds the XSAVE area; AMX tile data makes it about 11 KiB.
const maxXState = 16 << 10

// Regs reads the general purpose registers.
func (t *Task) Regs() (Regs, error) {
	var r Regs
	if err := unix.PtraceGetRegs(t.Pid, &r); err != nil {
		return r, fmt.Errorf("pid %d: get registers: %w", t.Pid, err)
	}
	return r, nil
}

// SetRegs writes the general purpose registers.
func (t *Task) SetRegs(r *Regs) error {
	if err := unix.PtraceSetRegs(t.Pid, r); err != nil {
		return fmt.Errorf("pid %d: set registers: %w", t.Pid, err)
	}
	return nil
}

// XState reads the XSAVE area (FPU, SSE, AVX, AVX-512, PKRU) in standard
// format; its length is the kernel's xstate size.
func (t *Task) XState() ([]byte, error) {
	buf := make([]byte, maxXState)
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	if err := ptracePtr(unix.PTRACE_GETREGSET, t.Pid, unix.NT_X86_XSTATE, unsafe.Pointer(&iov)); err != nil {
		return nil, fmt.Errorf("pid %d: get xstate: %w", t.Pid, err)
	}
	return buf[:iov.Len], nil
}

// SetXState writes an XSAVE area of the kernel's xstate size.
func (t *Task) SetXState(xs []byte) error {
	if len(xs) == 0 {
		return fmt.Errorf("pid %d: set xstate: empty area", t.Pid)
	}
	iov := unix.Iovec{Base: &xs[0]}
	iov.SetLen(len(xs))
	if err := ptracePtr(unix.PTRACE_SETREGSET, t.Pid, unix.NT_X86_XSTATE, unsafe.Pointer(&iov)); err != nil {
		return fmt.Errorf("pid %d: set xstate (%d bytes): %w", t.Pid, len(xs), err)
	}
	return nil
}

// SigMask reads the blocked signal mask.
func (t *Task) SigMask() (uint64, error) {
	var m uint64
	if err := ptracePtr(unix.PTRACE_GETSIGMASK, t.Pid, 8, unsafe.Pointer(&m)); err != nil {
		return 0, fmt.Errorf("pid %d: get signal mask: %w", t.Pid, err)
	}
	return m, nil
}

// SetSigMask sets the blocked signal mask.
func (t *Task) SetSigMask(m uint64) error {
	if err := ptracePtr(unix.PTRACE_SETSIGMASK, t.Pid, 8, unsafe.Pointer(&m)); err != nil {
		return fmt.Errorf("pid %d: set signal mask: %w", t.Pid, err)
	}
	return nil
}

// RseqConfig is a thread's rseq registration (struct
// ptrace_rseq_configuration). Size 0 means none.
type RseqConfig struct {
	Pointer   uint64
	Size      uint32
	Signature uint32
	Flags     uint32
	Pad       uint32
}

// Rseq reads the thread's rseq registration.
func (t *Task) Rseq() (RseqConfig, error) {
	var c RseqConfig
	err := ptracePtr(unix.PTRACE_GET_RSEQ_CONFIGURATION, t.Pid, unsafe.Sizeof(c), unsafe.Pointer(&c))
	if err != nil {
		return c, fmt.Errorf("pid %d: get rseq configuration: %w", t.Pid, err)
	}
	if c.Pointer == 0 {
		// Kernels before 6.3 give the size of struct rseq for a thread
		// that registered none (as one does while it starts).
		c.Size = 0
	}
	return c, nil
}
