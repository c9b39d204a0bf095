package compel

import (
	"bytes"
	"fmt"
	"os"
)

// Layout is what Infect needs to know of the memory of a process.
type Layout struct {
	// Code lists executable ranges to search for instructions, best
	// first (the vdso has a `syscall` in every process).
	Code []Range
	// Stack is the main thread's stack ([stack]); zero if unknown.
	Stack Range
	// Gadgets remembers where instructions lie in mapped files, for the
	// next process that maps them; nil searches every time.
	Gadgets *GadgetCache
}

// Range is an address range [Start, End). ID, if set, names what is
// mapped there (a file and its offset): ranges of one ID hold the same
// bytes, and a GadgetCache finds instructions in them once. File, if set,
// is a file that holds those bytes from Offset on, cheaper to read than
// the task's memory (whose pages a search would fault in).
type Range struct {
	Start, End uint64
	ID         string
	File       string
	Offset     uint64
}

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

// gadgetKinds are the instructions findGadgets looks for, in the order
// of the fields of gadgets.
var gadgetKinds = [][][]byte{{insnSyscall}, {insnSyscallRet}, insnSigreturn}

// GadgetCache remembers at which offsets of a mapped file (a Range's ID)
// each kind of gadget lies, or that it has none: a tree of processes maps
// the same libraries, and searching them takes milliseconds a process.
type GadgetCache struct {
	found map[string][3]int64 // offset from the range's start; -1: none
}

// NewGadgetCache returns an empty cache.
func NewGadgetCache() *GadgetCache { return &GadgetCache{found: map[string][3]int64{}} }

// findGadgets looks for the gadgets in the ranges of code, first found
// first kept, until it has them all. A bare syscall is required; the
// others are not. A cached offset is used only if the task has the
// expected bytes there.
func findGadgets(t *Task, code []Range, cache *GadgetCache) (gadgets, error) {
	var at [3]uint64
	for _, r := range code {
		if at[0] != 0 && at[1] != 0 && at[2] != 0 {
			break
		}
		offs, ok := cachedOffsets(t, r, cache)
		if !ok {
			offs = searchRange(t, r)
			if cache != nil && r.ID != "" {
				cache.found[r.ID] = offs
			}
		}
		for k, off := range offs {
			if at[k] == 0 && off >= 0 {
				at[k] = r.Start + uint64(off)
			}
		}
	}
	g := gadgets{syscall: at[0], syscallRet: at[1], sigreturn: at[2]}
	if g.syscall == 0 {
		return g, fmt.Errorf("pid %d: no syscall instruction found in its code", t.Pid)
	}
	return g, nil
}

// searchRange finds the offset in r of each kind of gadget, -1 if none:
// in r's file if it has one and the task has the same bytes there, else
// in the task's memory.
func searchRange(t *Task, r Range) [3]int64 {
	size := r.End - r.Start
	if r.File != "" {
		if f, err := os.Open(r.File); err == nil {
			offs := searchChunks(size, func(off uint64, b []byte) (int, error) {
				return f.ReadAt(b, int64(r.Offset+off)) // a mapping may reach past the end of its file
			})
			f.Close()
			if gadgetsIn(t, r, offs) {
				return offs
			}
		}
	}
	return searchChunks(size, func(off uint64, b []byte) (int, error) {
		if err := t.ReadMem(r.Start+off, b); err != nil {
			return 0, err
		}
		return len(b), nil
	})
}

// searchChunk is how much of a range searchChunks reads at a time: a
// library usually has every gadget early, and reading all of a libc's
// text (megabytes) for them cost more than the rest of the dump of a
// small process.
const searchChunk = 64 << 10

// gadgetOverlap is how far chunks overlap, for a gadget across two: the
// longest encoding but one byte.
const gadgetOverlap = 8

// searchChunks finds the offset of each kind of gadget in the size bytes
// read gives, a chunk at a time, until it has them all or read fails or
// comes short (the end of a file).
func searchChunks(size uint64, read func(off uint64, b []byte) (int, error)) [3]int64 {
	offs := [3]int64{-1, -1, -1}
	buf := make([]byte, min(size, searchChunk+gadgetOverlap))
	for start := uint64(0); start < size; start += searchChunk {
		want := min(size-start, uint64(len(buf)))
		n, err := read(start, buf[:want])
		all := true
		for k, off := range searchBytes(buf[:n]) {
			if offs[k] < 0 && off >= 0 {
				offs[k] = int64(start) + off
			}
			all = all && offs[k] >= 0
		}
		if all || err != nil || uint64(n) < want {
			break
		}
	}
	return offs
}

// searchBytes finds the offset in buf of each kind of gadget, -1 if none.
func searchBytes(buf []byte) [3]int64 {
	offs := [3]int64{-1, -1, -1}
	for k, patterns := range gadgetKinds {
		for _, p := range patterns {
			if i := bytes.Index(buf, p); i >= 0 {
				offs[k] = int64(i)
				break
			}
		}
	}
	return offs
}

// gadgetsIn says whether every gadget offs names is in t at r.
func gadgetsIn(t *Task, r Range, offs [3]int64) bool {
	for k, off := range offs {
		if off >= 0 && !gadgetAt(t, r.Start+uint64(off), gadgetKinds[k]) {
			return false
		}
	}
	return true
}

// cachedOffsets returns the cached offsets of r's ID, if every gadget
// they name is really there in t.
func cachedOffsets(t *Task, r Range, cache *GadgetCache) ([3]int64, bool) {
	if cache == nil || r.ID == "" {
		return [3]int64{}, false
	}
	offs, ok := cache.found[r.ID]
	return offs, ok && gadgetsIn(t, r, offs)
}

// gadgetAt says whether one of patterns lies at addr in t.
func gadgetAt(t *Task, addr uint64, patterns [][]byte) bool {
	for _, p := range patterns {
		buf := make([]byte, len(p))
		if t.ReadMem(addr, buf) == nil && bytes.Equal(buf, p) {
			return true
		}
	}
	return false
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
