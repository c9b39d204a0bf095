package compel

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// executorCode runs a table of system calls without stopping, so that
// thousands of calls cost one ptrace round trip instead of one each.
// Registers on entry: r12 = table, r13 = number of entries. Each entry is
// EntrySize bytes: nr, six arguments, and a slot for the result. It stops
// with int3 when the table is done (r13 = 0) or at the first call that
// fails (r12 points at the failing entry, rax holds -errno).
//
//	run:  test r13, r13 ; jz done
//	      mov rax, [r12]    ; mov rdi, [r12+8]  ; mov rsi, [r12+16]
//	      mov rdx, [r12+24] ; mov r10, [r12+32] ; mov r8, [r12+40]
//	      mov r9, [r12+48]  ; syscall ; mov [r12+56], rax
//	      cmp rax, -4095 ; jae done
//	      add r12, 64 ; dec r13 ; jmp run
//	done: int3
//
// It is followed by a lone `syscall; int3` used for single calls.
var executorCode = []byte{
	0x4d, 0x85, 0xed, 0x74, 0x3a,
	0x49, 0x8b, 0x04, 0x24,
	0x49, 0x8b, 0x7c, 0x24, 0x08,
	0x49, 0x8b, 0x74, 0x24, 0x10,
	0x49, 0x8b, 0x54, 0x24, 0x18,
	0x4d, 0x8b, 0x54, 0x24, 0x20,
	0x4d, 0x8b, 0x44, 0x24, 0x28,
	0x4d, 0x8b, 0x4c, 0x24, 0x30,
	0x0f, 0x05,
	0x49, 0x89, 0x44, 0x24, 0x38,
	0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff,
	0x73, 0x09,
	0x49, 0x83, 0xc4, 0x40,
	0x49, 0xff, 0xcd,
	0xeb, 0xc1,
	0xcc,
	// single call
	0x0f, 0x05, 0xcc,
}

// EntrySize is the size of one entry of a syscall table.
const EntrySize = 64

// ExecutorCode returns the machine code to place in the task; the executor
// starts at offset 0 and the lone syscall instruction at SyscallInsnOffset.
func ExecutorCode() []byte { return append([]byte(nil), executorCode...) }

// SyscallInsnOffset is where the single `syscall` instruction lies in
// ExecutorCode.
const SyscallInsnOffset = 0x40

// Call is one system call of a table.
type Call struct {
	Nr   uintptr
	Args [6]uint64
}

// EncodeTable lays out calls as the executor reads them.
func EncodeTable(calls []Call) []byte {
	b := make([]byte, 0, len(calls)*EntrySize)
	for _, c := range calls {
		b = binary.LittleEndian.AppendUint64(b, uint64(c.Nr))
		for _, a := range c.Args {
			b = binary.LittleEndian.AppendUint64(b, a)
		}
		b = binary.LittleEndian.AppendUint64(b, 0)
	}
	return b
}

// TableError reports the entry of a table that failed.
type TableError struct {
	Index int
	Errno syscall.Errno
}

// Error says which entry failed and how.
func (e *TableError) Error() string {
	return fmt.Sprintf("entry %d failed: %v", e.Index, e.Errno)
}

// Unwrap gives the errno, for errors.Is.
func (e *TableError) Unwrap() error { return e.Errno }

// RunTable runs n table entries that start at address table in the task,
// with the executor code at address code. It returns a *TableError naming
// the first failing entry. The task's registers are left as the executor
// left them.
func (t *Task) RunTable(code, table uint64, n int) error {
	if err := t.StartTable(code, table, n); err != nil {
		return err
	}
	return t.WaitTable(table, n)
}

// StartTable sets the task running a table and returns at once, so that
// several tasks (threads of one process) can run tables at the same time;
// WaitTable waits for the outcome.
func (t *Task) StartTable(code, table uint64, n int) error {
	if n == 0 {
		return nil
	}
	r, err := t.Regs()
	if err != nil {
		return err
	}
	enter(&r, code)
	r.R12 = table
	r.R13 = uint64(n)
	if err := t.SetRegs(&r); err != nil {
		return err
	}
	if err := ptrace(unix.PTRACE_CONT, t.Pid, 0, 0); err != nil {
		return fmt.Errorf("pid %d: run syscall table: %w", t.Pid, err)
	}
	return nil
}

// WaitTable waits until a table started with StartTable is done.
func (t *Task) WaitTable(table uint64, n int) error {
	if n == 0 {
		return nil
	}
	if err := t.waitTrap(unix.PTRACE_CONT); err != nil {
		return fmt.Errorf("run syscall table: %w", err)
	}
	r, err := t.Regs()
	if err != nil {
		return err
	}
	if r.R13 == 0 {
		return nil
	}
	return &TableError{Index: int((r.R12 - table) / EntrySize), Errno: errno(r.Rax)}
}
