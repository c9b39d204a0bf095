package compel

import (
	"bytes"
	"fmt"

	"golang.org/x/sys/unix"
)

// Parasite lets amber run system calls inside a frozen task to learn what
// /proc does not tell (signal actions, brk). It borrows a `syscall`
// instruction already in the task's code and a scratch page it maps, and
// Cure puts everything back.
type Parasite struct {
	t       *Task
	saved   Regs
	insn    uint64
	Scratch uint64 // address of ScratchSize bytes the task can write
}

// ScratchSize is the size of the parasite's scratch memory.
const ScratchSize = 64 << 10

// Range is an address range [Start, End).
type Range struct{ Start, End uint64 }

// Infect prepares t (frozen) for injected system calls. code lists
// executable ranges of the task to search for a `syscall` instruction,
// best first (the vdso has one in every process).
func Infect(t *Task, code []Range) (*Parasite, error) {
	saved, err := t.Regs()
	if err != nil {
		return nil, err
	}
	p := &Parasite{t: t, saved: saved}
	if p.insn, err = findSyscallInsn(t, code); err != nil {
		return nil, err
	}
	ret, err := t.Syscall(p.insn, unix.SYS_MMAP, 0, ScratchSize,
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	if err == nil && errno(ret) != 0 {
		err = fmt.Errorf("mmap scratch: %w", errno(ret))
	}
	if err != nil {
		t.SetRegs(&saved)
		return nil, fmt.Errorf("pid %d: infect: %w", t.Pid, err)
	}
	p.Scratch = ret
	return p, nil
}

func findSyscallInsn(t *Task, code []Range) (uint64, error) {
	for _, r := range code {
		buf := make([]byte, r.End-r.Start)
		if err := t.ReadMem(r.Start, buf); err != nil {
			continue
		}
		if i := bytes.Index(buf, []byte{0x0f, 0x05}); i >= 0 {
			return r.Start + uint64(i), nil
		}
	}
	return 0, fmt.Errorf("pid %d: no syscall instruction found in its code", t.Pid)
}

// Syscall runs one system call in the task and returns its result; a
// negative result is returned as an error.
func (p *Parasite) Syscall(nr uintptr, args ...uint64) (uint64, error) {
	return p.t.SyscallOK(p.insn, nr, args...)
}

// Read copies task memory at addr (usually inside Scratch).
func (p *Parasite) Read(addr uint64, buf []byte) error { return p.t.ReadMem(addr, buf) }

// Write copies buf into the task at addr (usually inside Scratch).
func (p *Parasite) Write(addr uint64, buf []byte) error { return p.t.WriteMem(addr, buf) }

// Cure unmaps the scratch memory and restores the registers the task had
// when infected, so that it continues (and restarts an interrupted system
// call) exactly as if nothing happened.
func (p *Parasite) Cure() error {
	_, err := p.t.SyscallOK(p.insn, unix.SYS_MUNMAP, p.Scratch, ScratchSize)
	if serr := p.t.SetRegs(&p.saved); serr != nil {
		return serr
	}
	if err != nil {
		return fmt.Errorf("pid %d: cure: %w", p.t.Pid, err)
	}
	return nil
}
