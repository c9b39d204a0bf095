package compel

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// Parasite lets amber run system calls inside a frozen task to learn what
// /proc does not tell (signal actions, brk). It borrows a `syscall`
// instruction already in the task's code to map a scratch area, places
// the executor there so that Batch runs many calls in one round trip, and
// Cure puts everything back.
type Parasite struct {
	t       *Task
	saved   Regs
	insn    uint64
	Scratch uint64 // address of ScratchSize bytes the task can write
	// borrowed: the scratch area belongs to the parasite of another
	// thread of the process (Borrow), which unmaps it.
	borrowed bool
}

// ScratchSize is the size of the parasite's scratch memory: the executor
// on the first page, then a table of up to MaxBatch calls, then data.
const ScratchSize = 64 << 10

// MaxBatch is the most calls one Batch runs.
const MaxBatch = 128

// Offsets in the scratch area.
const (
	tableOffset = 4096
	dataOffset  = tableOffset + MaxBatch*EntrySize
)

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
		unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	if err == nil && errno(ret) != 0 {
		err = fmt.Errorf("mmap scratch: %w", errno(ret))
	}
	if err != nil {
		t.SetRegs(&saved)
		return nil, fmt.Errorf("pid %d: infect: %w", t.Pid, err)
	}
	p.Scratch = ret
	if err := t.WriteMem(p.Scratch, executorCode); err != nil {
		p.Cure()
		return nil, fmt.Errorf("pid %d: infect: %w", t.Pid, err)
	}
	return p, nil
}

// Borrow lets t, another thread of the infected process, run calls with
// p's executor and scratch area, which it shares: it needs no mapping of
// its own, only its registers saved, and a process of many threads is
// infected once. The borrowed parasite must be cured, which gives t its
// registers back, before p is; the two must not run calls at once.
func (p *Parasite) Borrow(t *Task) (*Parasite, error) {
	saved, err := t.Regs()
	if err != nil {
		return nil, err
	}
	return &Parasite{t: t, saved: saved, insn: p.insn, Scratch: p.Scratch, borrowed: true}, nil
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

// Task is the thread the parasite runs calls in.
func (p *Parasite) Task() *Task { return p.t }

// Data is where in the scratch area calls of a Batch may write results.
func (p *Parasite) Data() uint64 { return p.Scratch + dataOffset }

// DataSize is how many bytes from Data the calls may use.
const DataSize = ScratchSize - dataOffset

// Batch runs calls in the task in one round trip and returns their
// results; a failing call stops it with a *TableError.
func (p *Parasite) Batch(calls []Call) ([]uint64, error) {
	if len(calls) > MaxBatch {
		return nil, fmt.Errorf("pid %d: batch of %d calls exceeds %d", p.t.Pid, len(calls), MaxBatch)
	}
	table := p.Scratch + tableOffset
	if err := p.t.WriteMem(table, EncodeTable(calls)); err != nil {
		return nil, err
	}
	if err := p.t.RunTable(p.Scratch, table, len(calls)); err != nil {
		return nil, fmt.Errorf("pid %d: %w", p.t.Pid, err)
	}
	raw := make([]byte, len(calls)*EntrySize)
	if err := p.t.ReadMem(table, raw); err != nil {
		return nil, err
	}
	out := make([]uint64, len(calls))
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(raw[i*EntrySize+56:])
	}
	return out, nil
}

// Read copies task memory at addr (usually inside Scratch).
func (p *Parasite) Read(addr uint64, buf []byte) error { return p.t.ReadMem(addr, buf) }

// Write copies buf into the task at addr (usually inside Scratch).
func (p *Parasite) Write(addr uint64, buf []byte) error { return p.t.WriteMem(addr, buf) }

// Cure unmaps the scratch memory and restores the registers the task had
// when infected, so that it continues (and restarts an interrupted system
// call) exactly as if nothing happened.
func (p *Parasite) Cure() error {
	if p.borrowed {
		return p.t.SetRegs(&p.saved)
	}
	_, err := p.t.SyscallOK(p.insn, unix.SYS_MUNMAP, p.Scratch, ScratchSize)
	if serr := p.t.SetRegs(&p.saved); serr != nil {
		return serr
	}
	if err != nil {
		return fmt.Errorf("pid %d: cure: %w", p.t.Pid, err)
	}
	return nil
}
