package compel

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The scratch area of a parasite: the routine, the table of calls and the
// data calls write, then one area per thread.
const (
	codeOffset  = 0
	tableOffset = 4096
	dataOffset  = tableOffset + MaxBatch*EntrySize
	areasOffset = ScratchSize
)

// ScratchSize is the size of the scratch memory before the threads'
// areas: the routine on the first page, then a table of up to MaxBatch
// calls, then data.
const ScratchSize = 64 << 10

// MaxBatch is the most calls one Batch runs.
const MaxBatch = 128

// DataSize is how many bytes from Data the calls of a batch may use.
const DataSize = ScratchSize - dataOffset

// EntryMax is the most calls Infect's entry calls may be, and
// EntryDataSize how many bytes they may write from ThreadParasite.EntryData.
const (
	EntryMax      = (areaData - areaTable) / EntrySize
	EntryDataSize = areaFrame - areaData
)

// A thread's area, as parasiteCode reads it (offsets from rbx).
const (
	areaLeft    = 0x00  // u64: table entries left
	areaAt      = 0x08  // u64: the entry the table stopped at
	areaPollfd  = 0x10  // struct pollfd on the control socket
	areaPair    = 0x28  // int[2]: the socket pair the setup made
	areaAmberFd = 0x30  // int: the process's copy of amber's end, then amber's pidfd (watch.go)
	areaLeader  = 0x38  // u64: nonzero in the leader's area
	areaByte    = 0x40  // the byte sent to amber when a table is done
	areaCPUs    = 0x48  // cpu_set_t (128 bytes): the affinity to give back
	areaTable   = 0x100 // the thread's own table of calls: EntryMax entries
	areaData    = 0x300 // where its calls may write: EntryDataSize bytes
	areaFrame   = 0x400 // struct rt_sigframe, 64-byte aligned
)

// An rt_sigframe (x86-64): the pretcode slot, struct ucontext, siginfo,
// then, 64-byte aligned, the XSAVE area its sigcontext points to. A
// thread executes rt_sigreturn with rsp just past the pretcode slot.
const (
	frameUctx    = 8
	frameFPState = 0x1c0
)

// Offsets in struct ucontext (x86-64).
const (
	ucFlags    = 0
	ucMcontext = 40
	ucSigmask  = 296
)

// uc_flags: the frame holds XSAVE state and ss, and ss is to be taken as is.
const ucFPXState, ucSigcontextSS, ucStrictRestoreSS = 1, 2, 4

// sigFrame is what rt_sigreturn gives a thread back.
type sigFrame struct {
	resume  Regs   // registers: resumeRegs of the frozen ones
	mask    uint64 // blocked signals
	fpstate []byte // cpu.SigframeXState of the frozen XSAVE area
}

// size is the bytes the frame takes.
func (f sigFrame) size() int { return frameFPState + len(f.fpstate) }

// encode writes the frame into b, which lies at address at, 64-byte
// aligned in the task; the pretcode slot holds pretcode.
func (f sigFrame) encode(b []byte, at, pretcode uint64) {
	le := binary.LittleEndian
	le.PutUint64(b, pretcode)
	uc := b[frameUctx:]
	le.PutUint64(uc[ucFlags:], ucFPXState|ucSigcontextSS|ucStrictRestoreSS)
	// rt_sigreturn also sets the sigaltstack from uc_stack: a stack of
	// size 0 is refused (ENOMEM), which leaves the thread's own alone.
	putSigcontext(uc[ucMcontext:], &f.resume, at+frameFPState)
	le.PutUint64(uc[ucSigmask:], f.mask)
	copy(b[frameFPState:], f.fpstate)
}

// areaSize is the size of a thread's area whose frame holds an XSAVE area
// of fpSize bytes (magic2 included), rounded so the next one stays
// 64-byte aligned.
func areaSize(fpSize int) int { return (areaFrame + frameFPState + fpSize + 63) &^ 63 }

// threadArea is what a thread's area starts with.
type threadArea struct {
	sigFrame
	leader bool
	ctl    int // the control socket in the process; -1 before setup
	cpus   unix.CPUSet
	entry  []Call // the calls the thread runs as it enters the routine
	// watch is what the thread waits on, amber's pidfd in the process,
	// if set (above 0), else ctl.
	watch int
}

// appendTo lays the area out as parasiteCode reads it after buf; at is
// where it lies in the task, which the frame's fpstate pointer needs.
func (a threadArea) appendTo(buf []byte, at uint64) []byte {
	n := len(buf)
	buf = append(buf, make([]byte, areaSize(len(a.fpstate)))...)
	b := buf[n:]
	le := binary.LittleEndian
	wait := a.ctl
	if a.watch > 0 {
		wait = a.watch
	}
	le.PutUint32(b[areaPollfd:], uint32(int32(wait)))
	le.PutUint16(b[areaPollfd+4:], unix.POLLIN|unix.POLLRDHUP)
	le.PutUint32(b[areaPair:], ^uint32(0))
	le.PutUint32(b[areaPair+4:], ^uint32(0))
	le.PutUint32(b[areaAmberFd:], ^uint32(0))
	if a.leader {
		le.PutUint64(b[areaLeader:], 1)
	}
	copy(b[areaCPUs:areaCPUs+128], unsafe.Slice((*byte)(unsafe.Pointer(&a.cpus)), unsafe.Sizeof(a.cpus)))
	copy(b[areaTable:areaData], EncodeTable(a.entry))
	a.sigFrame.encode(b[areaFrame:], at+areaFrame, 0)
	return buf
}

// putSigcontext writes struct sigcontext (x86-64) for regs.
func putSigcontext(b []byte, r *Regs, fpstate uint64) {
	le := binary.LittleEndian
	for i, v := range []uint64{r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15,
		r.Rdi, r.Rsi, r.Rbp, r.Rbx, r.Rdx, r.Rax, r.Rcx, r.Rsp, r.Rip, r.Eflags} {
		le.PutUint64(b[8*i:], v)
	}
	le.PutUint16(b[144:], uint16(r.Cs))
	le.PutUint16(b[150:], uint16(r.Ss))
	le.PutUint64(b[184:], fpstate)
}
