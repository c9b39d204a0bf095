package compel

import (
	"bytes"
	"fmt"
)

// Layout is what Infect needs to know of the memory of a process.
type Layout struct {
	// Code lists executable ranges to search for instructions, best
	// first (the vdso has a `syscall` in every process).
	Code []Range
	// Stack is the main thread's stack ([stack]); zero if unknown.
	Stack Range
}

// Range is an address range [Start, End).
type Range struct{ Start, End uint64 }

// contains says whether addr lies in r.
func (r Range) contains(addr uint64) bool { return addr >= r.Start && addr < r.End }

// gadgets are instructions already in a process with which amber makes a
// frozen thread run a system call that leaves it safe at every moment:
// the thread enters `syscall; ret` with its stack pointer on a signal
// frame amber wrote below its own stack pointer, whose return slot holds
// the address of `mov eax, 15; syscall`. Should amber die at any moment,
// the thread finishes the call, returns into rt_sigreturn and is back in
// its frozen state. Only the scratch area (mapping it, unmapping it) needs
// this: once it is mapped, the parasite's own code serves.
type gadgets struct {
	syscall    uint64 // a bare `syscall`, when there is nothing better
	syscallRet uint64 // syscall; ret
	sigreturn  uint64 // mov eax, 15; syscall (glibc's __restore_rt, Go's sigreturn)
}

// Encodings searched for.
var (
	insnSyscall    = []byte{0x0f, 0x05}
	insnSyscallRet = []byte{0x0f, 0x05, 0xc3}
	insnSigreturn  = [][]byte{
		{0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05}, // mov rax, 15; syscall
		{0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05},             // mov eax, 15; syscall
	}
)

// findGadgets looks for the gadgets in the ranges of code, first found
// first kept. A bare syscall is required; the others are not.
func findGadgets(t *Task, code []Range) (gadgets, error) {
	var g gadgets
	for _, r := range code {
		buf := make([]byte, r.End-r.Start)
		if err := t.ReadMem(r.Start, buf); err != nil {
			continue
		}
		at := func(pattern []byte) uint64 {
			if i := bytes.Index(buf, pattern); i >= 0 {
				return r.Start + uint64(i)
			}
			return 0
		}
		if g.syscall == 0 {
			g.syscall = at(insnSyscall)
		}
		if g.syscallRet == 0 {
			g.syscallRet = at(insnSyscallRet)
		}
		for _, p := range insnSigreturn {
			if g.sigreturn == 0 {
				g.sigreturn = at(p)
			}
		}
	}
	if g.syscall == 0 {
		return g, fmt.Errorf("pid %d: no syscall instruction found in its code", t.Pid)
	}
	return g, nil
}

// safe says whether the gadgets make a safe system call possible.
func (g gadgets) safe() bool { return g.syscallRet != 0 && g.sigreturn != 0 }

// redZone is the part of the stack below the stack pointer that a
// function may use without moving it (x86-64 ABI).
const redZone = 128

// frameSlot returns where below sp, on stack, a signal frame of size
// bytes fits, 64-byte aligned and clear of the red zone; ok is false if
// sp is not on stack or there is no room. Only the main thread's stack is
// used: what lies below the stack pointer of another stack (a goroutine's,
// in the middle of Go's heap) may belong to something else.
func frameSlot(sp uint64, stack Range, size int) (uint64, bool) {
	if !stack.contains(sp) || sp < stack.Start+redZone+uint64(size)+64 {
		return 0, false
	}
	return (sp - redZone - uint64(size)) &^ 63, true
}
