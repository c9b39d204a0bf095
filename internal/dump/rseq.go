package dump

import (
	"encoding/binary"
	"fmt"

	"amber/internal/compel"
)

// struct rseq and struct rseq_cs of the kernel's uapi (linux/rseq.h).
const (
	rseqCsFieldOffset = 8  // offsetof(struct rseq, rseq_cs)
	rseqCsSize        = 32 // sizeof(struct rseq_cs)
	// rseqNoRestartOnSignal is RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL: the
	// kernel does not move such a section to its abort handler.
	rseqNoRestartOnSignal = 1 << 1
)

// rseqCS is a restartable sequence's descriptor, struct rseq_cs.
type rseqCS struct {
	version, flags                     uint32
	startIP, postCommitOffset, abortIP uint64
}

func parseRseqCS(b []byte) rseqCS {
	le := binary.LittleEndian
	return rseqCS{
		version:          le.Uint32(b[0:]),
		flags:            le.Uint32(b[4:]),
		startIP:          le.Uint64(b[8:]),
		postCommitOffset: le.Uint64(b[16:]),
		abortIP:          le.Uint64(b[24:]),
	}
}

// resumeIP is where a thread frozen at ip resumes: the abort handler if
// ip is inside the critical section, as the kernel would have done had
// the thread been preempted or signalled there. It is ip otherwise.
func (cs rseqCS) resumeIP(ip uint64) (uint64, error) {
	if ip < cs.startIP || ip-cs.startIP >= cs.postCommitOffset {
		return ip, nil
	}
	if cs.version != 0 {
		return 0, fmt.Errorf("rseq critical section at %#x: version %d, only 0 is known", cs.startIP, cs.version)
	}
	if cs.flags&rseqNoRestartOnSignal != 0 {
		return ip, nil
	}
	return cs.abortIP, nil
}

// abortRseq moves a thread frozen inside an rseq critical section to the
// section's abort handler. The kernel does that when it next returns to
// the thread, and clears the thread's rseq_cs on the way; but the
// parasite, and at restore the injected calls, return to the thread at
// addresses outside the section, where the kernel only clears rseq_cs.
// Put back inside, the thread would finish its section unprotected. So
// the thread's registers, those of its image and those it resumes with
// after the dump, point at the abort handler instead. rseq_cs is read
// with ptrace's view of memory: nothing has run in the thread yet.
func abortRseq(t *compel.Task, th *threadState) error {
	if th.rseq.Size == 0 {
		return nil
	}
	var ptr [8]byte
	if err := t.ReadMem(th.rseq.Pointer+rseqCsFieldOffset, ptr[:]); err != nil {
		return fmt.Errorf("rseq area at %#x: %w", th.rseq.Pointer, err)
	}
	csAddr := binary.LittleEndian.Uint64(ptr[:])
	if csAddr == 0 {
		return nil
	}
	var b [rseqCsSize]byte
	if err := t.ReadMem(csAddr, b[:]); err != nil {
		return fmt.Errorf("rseq critical section descriptor at %#x: %w", csAddr, err)
	}
	ip, err := parseRseqCS(b[:]).resumeIP(th.regs.Rip)
	if err != nil {
		return err
	}
	th.regs.Rip = ip
	return nil
}
