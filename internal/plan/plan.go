// Package plan computes, from the images alone, what restoring a task will
// make it do: the system calls in order, and the memory their arguments
// point into. It is plain Go with no process behind it, so tests can check
// a plan call by call; package restore carries plans out through compel.
//
// A task runs its plan from a scratch area mapped at Program.Base: the
// executor code (from compel) on the first page, then a parking place for
// the kernel's vdso while everything else is unmapped, then the data the
// calls point to, then the table of calls.
package plan

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"amber/internal/compel"
)

// PageSize is the x86-64 page size.
const PageSize = 4096

// Call is one system call a task will run.
type Call struct {
	Nr   uintptr
	Args [6]uint64
	What string // what it is for, quoted in errors with the call itself
	// ByAmber: amber makes the call itself, between the task's calls
	// before and after it (Builder.Privileged).
	ByAmber bool
}

// String describes the call for an error message: what it is for and
// the system call with its arguments.
func (c Call) String() string {
	return fmt.Sprintf("%s: %s(%#x, %#x, %#x, %#x, %#x, %#x)", c.What, SyscallName(c.Nr),
		c.Args[0], c.Args[1], c.Args[2], c.Args[3], c.Args[4], c.Args[5])
}

// Program is the scratch area of one process and the calls its threads
// run, in sections.
type Program struct {
	Base      uint64 // address of the scratch area
	Size      uint64 // its length, page aligned
	Park      uint64 // where the vdso block waits while the task is emptied
	Table     uint64 // address of the encoded calls
	CloneArgs uint64 // room for clone3 arguments when forking from the task
	Image     []byte // contents of the scratch area from Base
	Calls     []Call
	Sections  []Section
	// Temporaries are the paths the calls make and remove again
	// (Builder.Temporary), in the order made.
	Temporaries []string
}

// Section is a run of calls that one thread executes at one step of the
// restore.
type Section struct {
	Name       string
	Start, End int // calls [Start, End)
}

// Section returns the section called name.
func (p *Program) Section(name string) (Section, bool) {
	for _, s := range p.Sections {
		if s.Name == name {
			return s, true
		}
	}
	return Section{}, false
}

// TableAt is the address of call i in the encoded table.
func (p *Program) TableAt(i int) uint64 { return p.Table + uint64(i)*compel.EntrySize }

// Code is the address of the executor.
func (p *Program) Code() uint64 { return p.Base }

// Insn is the address of a lone `syscall` instruction in the scratch area.
func (p *Program) Insn() uint64 { return p.Base + compel.SyscallInsnOffset }

// String lists the calls, one a line, for logs and tests.
func (p *Program) String() string {
	var b strings.Builder
	for i, c := range p.Calls {
		fmt.Fprintf(&b, "%5d %-16s %#x %#x %#x %#x %#x %#x  %s\n", i, SyscallName(c.Nr),
			c.Args[0], c.Args[1], c.Args[2], c.Args[3], c.Args[4], c.Args[5], c.What)
	}
	return b.String()
}

// Builder collects the calls and data of a Program.
type Builder struct {
	base      uint64
	parkSize  uint64
	data      []byte // scratch contents from base
	calls     []Call
	fds       fdTable
	sections  []Section
	cloneArgs uint64
	// userns: the task is in a user namespace of its own
	// (SetUserNamespace).
	userns bool
	temps  []string
}

// cloneArgsSize holds struct clone_args and a one-entry set_tid array.
const cloneArgsSize = 128

// NewBuilder starts a program whose scratch area will be at base, with
// parkSize bytes (page aligned) reserved to park the vdso block. The task
// is assumed to start with no open descriptors (the plan closes them all
// first), so that the descriptor every open returns is known in advance.
func NewBuilder(base, parkSize uint64) *Builder {
	b := &Builder{base: base, parkSize: parkSize, fds: fdTable{}}
	b.data = append(b.data, compel.ExecutorCode()...)
	b.data = append(b.data, make([]byte, PageSize-len(b.data))...)
	b.data = append(b.data, make([]byte, parkSize)...)
	b.cloneArgs = b.Bytes(make([]byte, cloneArgsSize))
	return b
}

// StartSection begins a new section; calls added from now on belong to
// it until the next one starts.
func (b *Builder) StartSection(name string) {
	b.endSection()
	b.sections = append(b.sections, Section{Name: name, Start: len(b.calls), End: -1})
}

func (b *Builder) endSection() {
	if n := len(b.sections); n > 0 && b.sections[n-1].End < 0 {
		b.sections[n-1].End = len(b.calls)
	}
}

// Park is the address of the parking place for the vdso block.
func (b *Builder) Park() uint64 { return b.base + PageSize }

// Bytes copies p into the scratch data and returns its address in the
// task, aligned to 8 bytes.
func (b *Builder) Bytes(p []byte) uint64 {
	for len(b.data)%8 != 0 {
		b.data = append(b.data, 0)
	}
	addr := b.base + uint64(len(b.data))
	b.data = append(b.data, p...)
	return addr
}

// PageBytes copies p into the scratch data on whole pages of its own and
// returns its address: pages a task may move out of the scratch area
// (mremap) to where they belong.
func (b *Builder) PageBytes(p []byte) uint64 {
	pad := func() {
		for len(b.data)%PageSize != 0 {
			b.data = append(b.data, 0)
		}
	}
	pad()
	addr := b.base + uint64(len(b.data))
	b.data = append(b.data, p...)
	pad()
	return addr
}

// String stores s NUL-terminated and returns its address.
func (b *Builder) String(s string) uint64 { return b.Bytes(append([]byte(s), 0)) }

// Uint64s stores words and returns their address.
func (b *Builder) Uint64s(words ...uint64) uint64 {
	p := make([]byte, 0, 8*len(words))
	for _, w := range words {
		p = binary.LittleEndian.AppendUint64(p, w)
	}
	return b.Bytes(p)
}

// Call appends a system call.
func (b *Builder) Call(what string, nr uintptr, args ...uint64) {
	c := Call{Nr: nr, What: what}
	copy(c.Args[:], args)
	b.calls = append(b.calls, c)
}

// SetUserNamespace says the task will be in a user namespace of its own
// when it runs the plan: the calls planned with Privileged are then made
// by amber.
func (b *Builder) SetUserNamespace() { b.userns = true }

// Privileged appends a call that a task in a user namespace of its own
// may not make: setsockopt's SO_SNDBUFFORCE and SO_RCVBUFFORCE, which
// need CAP_NET_ADMIN in the initial user namespace, and the fchown or
// fchownat (AT_FDCWD, AT_SYMLINK_NOFOLLOW) of a file the task made,
// which the task, amber's ids that the namespace does not map, may not
// give away. There amber makes the call itself, as root, on its copy of
// the task's descriptor or on the path in the task's root, its owner
// turned into amber's view (CRIU's restore has its usernsd make them);
// elsewhere the task does.
func (b *Builder) Privileged(what string, nr uintptr, args ...uint64) {
	b.Call(what, nr, args...)
	if b.userns {
		b.calls[len(b.calls)-1].ByAmber = true
	}
}

// Temporary records path, which the plan makes and removes again
// before it ends (an unlinked file made again, the directories made for
// it): should the restore fail between the two, amber removes it.
func (b *Builder) Temporary(path string) { b.temps = append(b.temps, path) }

// Grow makes room for n more calls: a planner that knows roughly how
// many it adds spares the copies of a table grown call by call (in a
// restore of 10,000 files they were most of the garbage and brought on
// a collection).
func (b *Builder) Grow(n int) { b.calls = slices.Grow(b.calls, n) }

// Len is the number of calls so far.
func (b *Builder) Len() int { return len(b.calls) }

// Finish lays out the table and returns the program.
func (b *Builder) Finish() *Program {
	b.endSection()
	cc := make([]compel.Call, len(b.calls))
	for i, c := range b.calls {
		cc[i] = compel.Call{Nr: c.Nr, Args: c.Args}
	}
	table := b.Bytes(compel.EncodeTable(cc))
	size := (uint64(len(b.data)) + PageSize - 1) &^ (PageSize - 1)
	return &Program{
		Base: b.base, Size: size, Park: b.Park(), Table: table, CloneArgs: b.cloneArgs,
		Image: b.data, Calls: b.calls, Sections: b.sections, Temporaries: b.temps,
	}
}
