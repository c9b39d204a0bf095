package compel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"amber/internal/cpu"
	"amber/internal/proc"
)

// Parasite lets amber run system calls inside the threads of a frozen
// process, to learn what /proc does not tell (signal actions, brk,
// timers, each thread's sigaltstack). Its code (parasiteCode) lies in a
// scratch mapping of the process; every thread runs it, asleep in ppoll
// on a control socket between the calls amber makes it run.
//
// A killed amber must leave its targets as they were, and the parasite is
// built so that it does at every moment: no thread ever stops on a
// breakpoint or single-step trap, whose SIGTRAP kills a task without a
// tracer, and the syscall stops amber uses report SIGTRAP|0x80, which
// the kernel drops when the tracer is gone. A thread asleep in the routine
// sees its pidfd of amber readable once amber is dead and untraced it
// (watch.go), and returns to the
// registers, signal mask, FPU state and CPUs it was frozen with through
// rt_sigreturn on a frame amber wrote beforehand. A thread amber stopped
// is in a stop inside signal delivery, with registers that lead into the
// routine or are its frozen ones, so that detaching it (which the kernel
// does when amber dies) is safe too. Mapping and unmapping the scratch
// area go through gadgets with a frame on the main stack (see gadgets);
// a process with no thread on its main stack, or without the gadgets,
// has a short window there instead. What stays behind when amber dies
// is the scratch mapping, which nothing in the process refers to any more.
type Parasite struct {
	base, size uint64
	ctl        *os.File // amber's end of the control socket
	ctlFd      int      // the process's end of it, -1 until set up
	threads    []*victim
	timeout    time.Duration
	pin        unix.CPUSet
	layout     Layout
	g          gadgets
	// injector maps and unmaps the scratch area: a thread on the main
	// stack, where the gadgets' frame fits, else the leader.
	injector *victim
	// watchFd is the process's pidfd of amber, which the routine waits
	// on (watch.go); -1 until set up.
	watchFd int
}

// victim is one thread of an infected process.
type victim struct {
	t      *Task
	area   uint64 // its area in the scratch
	frozen Regs   // its registers when frozen
	mask   uint64
	cpus   unix.CPUSet // its own affinity, given back at Cure
	// frame gives it its frozen state back through rt_sigreturn.
	frame sigFrame
	// inside: it runs the routine; otherwise it is stopped with its
	// frozen registers and signal mask.
	inside bool
	// entry and entryErr are what its entry calls gave, entryData
	// what they wrote.
	entry     []uint64
	entryErr  error
	entryData []byte
	// escaped: the routine gave up waiting for amber and led the thread
	// back, so it ran on; amber stopped it again where it got to.
	escaped bool
}

// blockAll is the signal mask threads run the routine with: no handler
// of the process may run while it is dumped.
const blockAll = ^uint64(0)

// Frozen is a thread to infect, with what the caller read of it when it
// froze it: the state the parasite gives back should amber die.
type Frozen struct {
	Task   *Task
	Regs   Regs
	Mask   uint64
	XState []byte // as Task.XState returns it
}

// Infect places the parasite in the process of threads, all frozen, the
// leader first; layout tells where to find code and the main stack. Each
// thread, as it enters the routine, runs the calls entry gives it (at most
// EntryMax, writing at most EntryDataSize bytes from data), all threads
// at once: ThreadParasite.Entry has their results. While infected the
// leader runs on the CPUs of pin, which should be the tracer's: a ptrace
// round trip between tasks of one CPU wakes no other. On error every
// thread is back as it was, except that a failure in mapping the scratch
// area may leave it mapped.
func Infect(threads []Frozen, layout Layout, pin unix.CPUSet, entry func(data uint64) []Call) (*Parasite, error) {
	leader := threads[0].Task
	p := &Parasite{timeout: leader.waitLimit(), ctlFd: -1, watchFd: -1, pin: pin, layout: layout}
	areas := make([]threadArea, len(threads))
	size := uint64(areasOffset)
	format := cpu.HostSigframe()
	for i, th := range threads {
		a, err := freezeArea(th, i == 0, format)
		if err != nil {
			return nil, fmt.Errorf("pid %d: infect: %w", th.Task.Pid, err)
		}
		areas[i] = a
		v := &victim{t: th.Task, area: size, frozen: th.Regs, mask: th.Mask, cpus: a.cpus, frame: a.sigFrame}
		p.threads = append(p.threads, v)
		size += uint64(areaSize(len(a.fpstate)))
	}
	p.size = (size + pageSize - 1) &^ (pageSize - 1)
	if err := p.start(areas, entry); err != nil {
		p.Cure()
		return nil, fmt.Errorf("pid %d: infect: %w", leader.Pid, err)
	}
	return p, nil
}

const pageSize = 4096

// freezeArea prepares what a thread's area must hold: its frame and its
// CPU affinity.
func freezeArea(th Frozen, leader bool, format cpu.SigframeFormat) (threadArea, error) {
	a := threadArea{leader: leader, ctl: -1, sigFrame: sigFrame{resume: resumeRegs(th.Regs), mask: th.Mask}}
	var err error
	if a.cpus, err = th.Task.Affinity(); err != nil {
		return a, err
	}
	a.fpstate, err = format.XState(th.XState)
	return a, err
}

// start maps the scratch area, makes the leader set up the control socket
// and run its entry calls, then sends every other thread into the routine
// through its own entry calls, and waits for them all. The leader is
// pinned (setUp); the other threads, which amber drives no more once they
// are in, are not.
func (p *Parasite) start(areas []threadArea, entry func(data uint64) []Call) error {
	leader := p.threads[0]
	var err error
	if p.g, err = findGadgets(leader.t, p.layout.Code, p.layout.Gadgets); err != nil {
		return err
	}
	p.injector = leader
	for _, v := range p.threads {
		if _, ok := p.frameSlot(v); ok {
			p.injector = v
			break
		}
	}
	base, err := p.syscallIn(p.injector, false, unix.SYS_MMAP, 0, p.size, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE, ^uint64(0), 0)
	if err != nil {
		return fmt.Errorf("mmap scratch: %w", err)
	}
	p.base = base
	for _, v := range p.threads {
		v.area += p.base
	}
	if err := leader.t.WriteMem(p.base, parasiteCode); err != nil {
		return err
	}
	if entry != nil {
		areas[0].entry = entry(leader.area + areaData)
	}
	if err := p.setUp(leader, areas[0]); err != nil {
		return err
	}
	if len(p.threads) > 1 {
		if err := p.enterAll(areas[1:], entry); err != nil {
			return err
		}
	}
	return nil
}

// enterAll sends every thread but the leader into the routine, each
// through its entry calls, and waits until all have run them.
func (p *Parasite) enterAll(areas []threadArea, entry func(data uint64) []Call) error {
	others := p.threads[1:]
	image := make([]byte, 0, p.base+p.size-others[0].area)
	for i, v := range others {
		areas[i].ctl, areas[i].watch = p.ctlFd, p.watchFd
		if entry != nil {
			areas[i].entry = entry(v.area + areaData)
			if len(areas[i].entry) > EntryMax {
				return fmt.Errorf("%d entry calls: more than %d", len(areas[i].entry), EntryMax)
			}
		}
		image = areas[i].appendTo(image, v.area)
	}
	// One write for all areas, which lie one after the other.
	if err := others[0].t.WriteMem(others[0].area, image); err != nil {
		return err
	}
	for i, v := range others {
		r := v.frozen
		enter(&r, p.base+entryTable)
		r.Rbx, r.R15 = v.area, uint64(p.ctlFd)
		r.R12, r.R13 = v.area+areaTable, uint64(len(areas[i].entry))
		if err := p.runRoutine(v, &r); err != nil {
			return err
		}
	}
	if err := p.awaitDone(others[0], len(others)); err != nil {
		return err
	}
	// One read for all areas again: each one's status, table and data.
	if err := others[0].t.ReadMem(others[0].area, image); err != nil {
		return err
	}
	for i, v := range others {
		p.decodeEntry(v, image[v.area-others[0].area:], len(areas[i].entry))
	}
	return nil
}

// frameSlot says where on the main stack, below v's frozen stack
// pointer, a signal frame for the gadgets fits, if it does and the
// gadgets are there.
func (p *Parasite) frameSlot(v *victim) (uint64, bool) {
	if !p.g.safe() {
		return 0, false
	}
	return frameSlot(v.frozen.Rsp, p.layout.Stack, v.frame.size())
}

// syscallIn makes v, stopped, run one system call and, with settle,
// brings it back to a signal stop at its frozen registers and mask;
// without, it stays at the call's exit, from where amber may set it any
// registers. With the gadgets and room on the main stack for their frame,
// amber's death at any moment of it leaves v safe: at the call's exit v
// goes on into the gadgets' rt_sigreturn. Otherwise, from setting the
// call's registers until settling, it would leave v running on from a
// bare `syscall` with foreign registers: a window of a few round trips.
func (p *Parasite) syscallIn(v *victim, settle bool, nr uintptr, args ...uint64) (uint64, error) {
	r := v.frozen
	setSyscallRegs(&r, nr, args)
	enter(&r, p.g.syscall)
	if slot, ok := p.frameSlot(v); ok {
		buf := make([]byte, v.frame.size())
		v.frame.encode(buf, slot, p.g.sigreturn)
		if err := v.t.WriteMem(slot, buf); err != nil {
			return 0, err
		}
		r.Rip, r.Rsp = p.g.syscallRet, slot
	}
	ret, err := v.t.syscallStopped(&r)
	if err == nil && errno(ret) != 0 {
		err = errno(ret)
	}
	if settle || err != nil {
		err = errors.Join(err, v.t.settle(&v.frozen, v.mask))
	}
	return ret, err
}

// runRoutine gives v registers r, which point into the routine, blocks
// every signal and lets it go.
func (p *Parasite) runRoutine(v *victim, r *Regs) error {
	if err := v.t.SetRegs(r); err != nil {
		return err
	}
	v.inside = true
	if err := v.t.SetSigMask(blockAll); err != nil {
		return err
	}
	if v.t.groupStop != 0 {
		// A stopped thread may hold a SIGSTOP of its own, which it would
		// take on its way in, to wait in a signal stop nobody waits for:
		// amber sees it in, to the routine's first system call.
		if err := ptrace(unix.PTRACE_SYSCALL, v.t.Pid, 0, 0); err != nil {
			return fmt.Errorf("pid %d: run parasite: %w", v.t.Pid, err)
		}
		if err := v.t.waitSyscallStop(); err != nil {
			return fmt.Errorf("pid %d: run parasite: %w", v.t.Pid, err)
		}
	}
	if err := ptrace(unix.PTRACE_CONT, v.t.Pid, 0, 0); err != nil {
		return fmt.Errorf("pid %d: run parasite: %w", v.t.Pid, err)
	}
	return nil
}

// setUp makes the leader create the control socket, stepping it over
// socketpair, takes the end meant for amber (pidfd_getfd) and sends the
// leader to close its copy of that end, take a pidfd of amber in its
// place (sendWatch) and wait on it. Should amber die at the stop after
// socketpair, the leader goes on in the routine, which closes both ends
// and leads it back.
func (p *Parasite) setUp(v *victim, a threadArea) error {
	if err := v.t.WriteMem(v.area, a.appendTo(nil, v.area)); err != nil {
		return err
	}
	r := v.frozen
	enter(&r, p.base+entrySetup)
	r.Rbx, r.R15 = v.area, ^uint64(0)
	if err := v.t.SetRegs(&r); err != nil {
		return err
	}
	v.inside = true
	// Pinned only now, in the routine, which gives the leader back its
	// CPUs by itself.
	if err := errors.Join(v.t.SetSigMask(blockAll), v.t.SetAffinity(p.pin)); err != nil {
		return err
	}
	ret, err := v.t.stepSyscall(&r)
	if err == nil && errno(ret) != 0 {
		err = fmt.Errorf("control socket: socketpair: %w", errno(ret))
	}
	if err != nil {
		v.inside = false
		return errors.Join(err, v.t.settle(&v.frozen, v.mask))
	}
	pair := make([]byte, 8)
	if err := v.t.ReadMem(v.area+areaPair, pair); err != nil {
		return err
	}
	ctl, amber := int(int32(binary.LittleEndian.Uint32(pair))), int(int32(binary.LittleEndian.Uint32(pair[4:])))
	fd := make([]byte, 4)
	binary.LittleEndian.PutUint32(fd, uint32(int32(ctl)))
	if err := errors.Join(p.takeEnd(v.t.Pid, amber), v.t.WriteMem(v.area+areaPollfd, fd)); err != nil {
		return errors.Join(err, p.undoSetUp(v, &r, ctl, amber))
	}
	p.ctlFd = ctl
	// It closes its copy of amber's end, receives amber's pidfd as the
	// same, lowest free, descriptor, which it waits on and which its
	// routine and Cure close (as areaAmberFd), runs its entry calls, tells
	// amber and waits.
	recv, err := p.sendWatch(v, ctl)
	if err == nil {
		binary.LittleEndian.PutUint32(fd, uint32(int32(amber)))
		err = errors.Join(v.t.WriteMem(v.area+areaTable, EncodeTable(append([]Call{recv}, a.entry...))),
			v.t.WriteMem(v.area+areaPollfd, fd), v.t.WriteMem(v.area+areaAmberFd, fd))
	}
	if err != nil {
		return errors.Join(err, p.undoSetUp(v, &r, ctl, amber))
	}
	enter(&r, p.base+entryCloseTable)
	r.Rdi, r.R15 = uint64(amber), uint64(ctl)
	r.R12, r.R13 = v.area+areaTable, uint64(1+len(a.entry))
	if err := p.runRoutine(v, &r); err != nil {
		return err
	}
	if err := p.awaitDone(v, 1); err != nil {
		return err
	}
	if err := p.readEntry(v, 1, len(a.entry)); err != nil {
		return err
	}
	p.watchFd = amber
	return p.receivedWatch(v, amber)
}

// readEntry reads what v's entry calls, n of them after skip calls of
// amber's own, left in its area.
func (p *Parasite) readEntry(v *victim, skip, n int) error {
	a := make([]byte, areaFrame)
	if err := v.t.ReadMem(v.area, a); err != nil {
		return err
	}
	res, err := decodeResults(v.t.Pid, a[areaLeft:], a[areaTable:areaData], v.area+areaTable, skip+n)
	var te *TableError
	if errors.As(err, &te) && te.Index < skip {
		return fmt.Errorf("pid %d: parasite set-up call %d: %w", v.t.Pid, te.Index, te.Errno)
	}
	if te != nil {
		te.Index -= skip
	}
	v.entry, v.entryErr = res[min(skip, len(res)):], err
	v.entryData = append([]byte(nil), a[areaData:areaFrame]...)
	return nil
}

// decodeEntry takes v's entry results and data from a, the start of its
// area as read back.
func (p *Parasite) decodeEntry(v *victim, a []byte, n int) {
	v.entry, v.entryErr = decodeResults(v.t.Pid, a[areaLeft:], a[areaTable:areaData], v.area+areaTable, n)
	v.entryData = append([]byte(nil), a[areaData:areaFrame]...)
}

// undoSetUp closes both ends of the socket pair in the leader, stopped
// after socketpair with registers r; the leader stays stopped there.
func (p *Parasite) undoSetUp(v *victim, r *Regs, ctl, amber int) error {
	fd := make([]byte, 4)
	binary.LittleEndian.PutUint32(fd, uint32(int32(amber)))
	if err := v.t.WriteMem(v.area+areaAmberFd, fd); err != nil {
		return err
	}
	r.R15 = uint64(ctl)
	v.inside = false
	return p.closeInLeader(v, r)
}

// takeEnd copies descriptor fd of process pid into amber, as the control
// socket.
func (p *Parasite) takeEnd(pid, fd int) error {
	mine, err := proc.CopyFd(pid, fd)
	if err != nil {
		return fmt.Errorf("take control socket: %w", err)
	}
	p.ctl = os.NewFile(uintptr(mine), "parasite control socket")
	return nil
}

// run makes v, asleep in the routine, run calls: amber stops it, points it
// at the table and lets it go, then waits for the byte the routine sends
// when done.
func (p *Parasite) run(v *victim, calls []Call) ([]uint64, error) {
	table := p.base + tableOffset
	if err := v.t.WriteMem(table, EncodeTable(calls)); err != nil {
		return nil, err
	}
	r, err := p.stop(v)
	if err != nil {
		return nil, err
	}
	enter(&r, p.base+entryTable)
	r.R12, r.R13 = table, uint64(len(calls))
	if err := v.t.SetRegs(&r); err != nil {
		return nil, err
	}
	if err := ptrace(unix.PTRACE_CONT, v.t.Pid, 0, 0); err != nil {
		return nil, fmt.Errorf("pid %d: run parasite table: %w", v.t.Pid, err)
	}
	if err := p.awaitDone(v, 1); err != nil {
		return nil, err
	}
	return p.results(v, table, len(calls))
}

// stop interrupts v in the routine and returns its registers there.
func (p *Parasite) stop(v *victim) (Regs, error) {
	if err := ptrace(unix.PTRACE_INTERRUPT, v.t.Pid, 0, 0); err != nil {
		return Regs{}, fmt.Errorf("pid %d: interrupt: %w", v.t.Pid, err)
	}
	if err := v.t.waitInterrupted(); err != nil {
		return Regs{}, err
	}
	r, err := v.t.Regs()
	if err != nil {
		return r, err
	}
	if r.Rip < p.base || r.Rip >= p.base+uint64(len(parasiteCode)) {
		v.inside, v.escaped = false, true
		return r, fmt.Errorf("pid %d: parasite left at rip %#x: %w", v.t.Pid, r.Rip, ErrTimeout)
	}
	return r, nil
}

// stopCheck is how long awaitDone waits on the control socket before it
// looks for threads of the routine stopped on the way; stopRecheck, once
// it found one, for the next that signals keep stopping.
const (
	stopCheck   = 10 * time.Millisecond
	stopRecheck = time.Millisecond
)

// awaitDone waits for n bytes on the control socket, one from each
// thread that finished its table; who names them in errors. A thread of
// the routine may stop on the way, where nobody waits for it, for a
// change of its job control: the trap a SIGCONT causes in every seized
// thread, a SIGSTOP, the group stop one begins. Every stopCheck awaitDone
// lets such threads go on (resumeStopped).
func (p *Parasite) awaitDone(who *victim, n int) error {
	fds := []unix.PollFd{{Fd: int32(p.ctl.Fd()), Events: unix.POLLIN}}
	deadline := time.Now().Add(p.timeout)
	buf := make([]byte, n)
	check := stopCheck
	for n > 0 {
		left := max(time.Until(deadline), 0)
		ready, err := unix.Poll(fds, int(min(left, check)/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("pid %d: wait for parasite: %w", who.t.Pid, err)
		}
		if ready == 0 && left == 0 {
			return fmt.Errorf("pid %d: parasite did not finish (%s): %w", who.t.Pid, p.routineStates(), ErrTimeout)
		}
		if ready == 0 {
			resumed, err := p.resumeStopped()
			if err != nil {
				return err
			}
			check = stopCheck
			if resumed {
				check = stopRecheck
			}
			continue
		}
		m, err := unix.Read(int(p.ctl.Fd()), buf[:n])
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil || m == 0 {
			return fmt.Errorf("pid %d: parasite socket closed: %w", who.t.Pid, ErrGone)
		}
		n -= m
	}
	return nil
}

// routineStates describes where each thread of the routine is, for the
// error of a routine that did not finish: its scheduler state and system
// call (/proc/PID/task/TID/stat and syscall).
func (p *Parasite) routineStates() string {
	var out []string
	for _, v := range p.threads {
		if !v.inside {
			continue
		}
		state, call := "gone", ""
		dir := fmt.Sprintf("/proc/%d/task/%d/", p.threads[0].t.Pid, v.t.Pid)
		if b, err := os.ReadFile(dir + "stat"); err == nil {
			if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) {
				state = string(b[i+2])
			}
		}
		if b, err := os.ReadFile(dir + "syscall"); err == nil {
			call = " syscall " + strings.TrimSpace(string(b))
		}
		out = append(out, fmt.Sprintf("thread %d state %s%s", v.t.Pid, state, call))
	}
	return strings.Join(out, "; ")
}

// resumeStopped lets go on every thread of the routine that entered a
// ptrace stop amber did not ask for, and says whether there was one.
func (p *Parasite) resumeStopped() (bool, error) {
	found := false
	for _, v := range p.threads {
		if !v.inside {
			continue
		}
		resumed, err := v.t.resumeIfStopped()
		if err != nil {
			return found, err
		}
		found = found || resumed
	}
	return found, nil
}

// results reads what the table of n calls at table left: each call's
// result, or the first that failed as a *TableError.
func (p *Parasite) results(v *victim, table uint64, n int) ([]uint64, error) {
	status := make([]byte, 16)
	if err := v.t.ReadMem(v.area+areaLeft, status); err != nil {
		return nil, err
	}
	raw := make([]byte, n*EntrySize)
	if err := v.t.ReadMem(table, raw); err != nil {
		return nil, err
	}
	return decodeResults(v.t.Pid, status, raw, table, n)
}

// decodeResults turns a thread's status words and its table of n calls
// at table (raw) into the calls' results, or the *TableError of the
// first that failed.
func decodeResults(pid int, status, raw []byte, table uint64, n int) ([]uint64, error) {
	le := binary.LittleEndian
	if left := le.Uint64(status); left != 0 {
		at := int((le.Uint64(status[8:]) - table) / EntrySize)
		if at < 0 || at >= n {
			return nil, fmt.Errorf("pid %d: parasite stopped at entry %d of %d", pid, at, n)
		}
		ret := le.Uint64(raw[at*EntrySize+56:])
		return nil, fmt.Errorf("pid %d: %w", pid, &TableError{Index: at, Errno: errno(ret)})
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = le.Uint64(raw[i*EntrySize+56:])
	}
	return out, nil
}

// Fds lists the descriptors the parasite holds in the process: a dump
// must not record them.
func (p *Parasite) Fds() []int {
	var fds []int
	for _, fd := range []int{p.ctlFd, p.watchFd} {
		if fd >= 0 {
			fds = append(fds, fd)
		}
	}
	return fds
}

// In returns what runs calls in thread t of the process.
func (p *Parasite) In(t *Task) *ThreadParasite {
	for _, v := range p.threads {
		if v.t == t {
			return &ThreadParasite{p: p, v: v}
		}
	}
	return nil
}

// Area returns the range of the scratch memory the parasite mapped in
// the process: a mapping of amber's, which the process's own layout
// leaves out.
func (p *Parasite) Area() (start, end uint64) { return p.base, p.base + p.size }

// Leader is the thread that set up the parasite.
func (p *Parasite) Leader() *ThreadParasite { return &ThreadParasite{p: p, v: p.threads[0]} }

// ThreadParasite runs calls in one thread of an infected process. Calls of
// one process run one at a time.
type ThreadParasite struct {
	p *Parasite
	v *victim
}

// Batch runs calls in the thread and returns their results; the first
// failing call stops it with a *TableError.
func (tp *ThreadParasite) Batch(calls []Call) ([]uint64, error) {
	if len(calls) > MaxBatch {
		return nil, fmt.Errorf("pid %d: batch of %d calls exceeds %d", tp.v.t.Pid, len(calls), MaxBatch)
	}
	if !tp.v.inside {
		return nil, fmt.Errorf("pid %d: parasite not running", tp.v.t.Pid)
	}
	return tp.p.run(tp.v, calls)
}

// Entry returns the results of the thread's entry calls (see Infect)
// and the EntryDataSize bytes they could write, or the *TableError of the
// first that failed.
func (tp *ThreadParasite) Entry() ([]uint64, []byte, error) {
	return tp.v.entry, tp.v.entryData, tp.v.entryErr
}

// Data is where in the scratch area calls of a Batch may write results.
func (tp *ThreadParasite) Data() uint64 { return tp.p.base + dataOffset }

// Read copies task memory at addr (usually inside the scratch area).
func (tp *ThreadParasite) Read(addr uint64, buf []byte) error { return tp.v.t.ReadMem(addr, buf) }

// Cure takes the parasite out: every thread is stopped with the registers,
// signal mask and CPUs it was frozen with, the control socket is closed
// and the scratch area unmapped, so that the process continues as if
// nothing happened. Cure undoes what it can of a parasite Infect set up
// only in part.
func (p *Parasite) Cure() error {
	var errs []error
	// CPUs first: once out of the routine, nothing would give them back
	// should amber die.
	for _, v := range p.threads {
		errs = append(errs, v.t.SetAffinity(v.cpus))
	}
	for _, v := range p.threads[1:] {
		errs = append(errs, p.bringBack(v))
	}
	leader := p.threads[0]
	errs = append(errs, p.closeLeader(leader))
	if p.base != 0 && !leader.escaped {
		if _, err := p.syscallIn(p.injector, true, unix.SYS_MUNMAP, p.base, p.size); err != nil {
			errs = append(errs, fmt.Errorf("pid %d: unmap scratch area: %w", p.injector.t.Pid, err))
		}
		p.base = 0
	}
	if p.injector != leader {
		errs = append(errs, leader.t.settle(&leader.frozen, leader.mask))
	}
	if p.ctl != nil {
		errs = append(errs, p.ctl.Close())
		p.ctl = nil
	}
	return errors.Join(errs...)
}

// bringBack stops a thread of the routine and gives it its frozen
// registers and mask.
func (p *Parasite) bringBack(v *victim) error {
	if !v.inside {
		return nil
	}
	if _, err := p.stop(v); err != nil {
		return err
	}
	v.inside = false
	// The mask first: a thread amber leaves between the two still has
	// the routine's registers, and the routine gives it back its frozen
	// ones; frozen registers with every signal blocked would stay so.
	if err := v.t.SetSigMask(v.mask); err != nil {
		return err
	}
	return v.t.SetRegs(&v.frozen)
}

// closeLeader stops the leader in the routine and makes it close the
// control socket's descriptors; it stays stopped at a syscall stop.
func (p *Parasite) closeLeader(v *victim) error {
	if v.escaped {
		return fmt.Errorf("pid %d: scratch area %#x left mapped", v.t.Pid, p.base)
	}
	if !v.inside {
		return nil
	}
	r, err := p.stop(v)
	if err != nil {
		return err
	}
	v.inside = false
	return p.closeInLeader(v, &r)
}

// closeInLeader makes the leader, stopped in the routine with registers
// r, close the process's end of the control socket and what the area
// holds (the pidfd of amber): it runs the routine's own way back,
// restore, a system call at a time, up to the exit of the last before
// its rt_sigreturn (sched_setaffinity, which gives the leader back its
// CPUs), where it stays. Should amber die at any step, the leader goes on
// along that way: every descriptor closed, each once, and its frozen
// registers back.
func (p *Parasite) closeInLeader(v *victim, r *Regs) error {
	enter(r, p.base+entryRestore)
	if err := v.t.SetRegs(r); err != nil {
		return err
	}
	for steps := 0; steps < 4; steps++ {
		nr, err := v.t.stepSyscallNr()
		if err != nil {
			return fmt.Errorf("pid %d: close the control socket: %w", v.t.Pid, err)
		}
		if nr == unix.SYS_SCHED_SETAFFINITY {
			return nil
		}
	}
	return fmt.Errorf("pid %d: the routine's way back did not reach sched_setaffinity", v.t.Pid)
}

// stepSyscallNr lets the task run through its next system call, to the
// stop at its exit, and returns the call's number.
func (t *Task) stepSyscallNr() (uint64, error) {
	if err := ptrace(unix.PTRACE_SYSCALL, t.Pid, 0, 0); err != nil {
		return 0, fmt.Errorf("PTRACE_SYSCALL: %w", err)
	}
	if err := t.waitSyscallStop(); err != nil {
		return 0, err
	}
	at, err := t.Regs()
	if err != nil {
		return 0, err
	}
	if err := ptrace(unix.PTRACE_SYSCALL, t.Pid, 0, 0); err != nil {
		return 0, fmt.Errorf("PTRACE_SYSCALL: %w", err)
	}
	return at.Orig_rax, t.waitSyscallStop()
}

// syscallStopped runs the system call at r.Rip with registers r, from a
// stop to the stop at its exit (PTRACE_SYSCALL), and returns its result;
// r becomes the registers at that stop.
func (t *Task) syscallStopped(r *Regs) (uint64, error) {
	if err := t.SetRegs(r); err != nil {
		return 0, err
	}
	return t.stepSyscall(r)
}

// stepSyscall lets the task run to the exit of its next system call
// (PTRACE_SYSCALL) and returns the result; r becomes the registers there.
func (t *Task) stepSyscall(r *Regs) (uint64, error) {
	for _, at := range []string{"entry", "exit"} {
		if err := ptrace(unix.PTRACE_SYSCALL, t.Pid, 0, 0); err != nil {
			return 0, fmt.Errorf("pid %d: PTRACE_SYSCALL: %w", t.Pid, err)
		}
		if err := t.waitSyscallStop(); err != nil {
			return 0, fmt.Errorf("pid %d: syscall %s: %w", t.Pid, at, err)
		}
	}
	out, err := t.Regs()
	if err != nil {
		return 0, err
	}
	*r = out
	return out.Rax, nil
}

// waitSyscallStop waits for a syscall-entry or -exit stop; signals that
// arrive meanwhile stay pending (keep).
func (t *Task) waitSyscallStop() error {
	for {
		ws, err := t.wait()
		if err != nil {
			return err
		}
		if ws.StopSignal() == unix.SIGTRAP|0x80 {
			return nil
		}
		if trapEvent(ws) != 0 {
			if err := ptrace(unix.PTRACE_SYSCALL, t.Pid, 0, 0); err != nil {
				return err
			}
			continue
		}
		kept, err := t.keep(ws.StopSignal())
		if err != nil {
			return err
		}
		if err := ptrace(unix.PTRACE_SYSCALL, t.Pid, 0, uintptr(kept)); err != nil {
			return err
		}
	}
}

// settle brings a task stopped at a syscall stop to a stop inside signal
// delivery with registers regs and signal mask mask. Only from there does
// the kernel restart a system call regs were frozen in when it lets the
// task go; on the way the task holds resumeRegs(regs), which are safe to
// run should amber die before it is done. The mask comes first, so that
// a task amber leaves at any point of the way runs on with its own: out
// of the routine, nothing else would give it back. (The interrupt stop
// comes before any signal is dequeued, so none is delivered on the way.)
func (t *Task) settle(regs *Regs, mask uint64) error {
	if err := t.SetSigMask(mask); err != nil {
		return err
	}
	r := resumeRegs(*regs)
	if err := t.SetRegs(&r); err != nil {
		return err
	}
	if err := ptrace(unix.PTRACE_INTERRUPT, t.Pid, 0, 0); err != nil {
		return fmt.Errorf("pid %d: interrupt: %w", t.Pid, err)
	}
	if err := ptrace(unix.PTRACE_CONT, t.Pid, 0, 0); err != nil {
		return fmt.Errorf("pid %d: resume to a signal stop: %w", t.Pid, err)
	}
	if err := t.waitInterrupted(); err != nil {
		return err
	}
	return t.SetRegs(regs)
}

// Query is a group of calls one asker makes of a task and what to make of
// their results: Queries runs many in one round trip.
type Query struct {
	// Calls are the calls, which may write up to DataSize bytes from data.
	Calls    func(data uint64) []Call
	DataSize int
	// Decode takes the calls' results and the bytes they wrote.
	Decode func(results []uint64, data []byte) error
}

// Queries runs the calls of every query in one batch, each query writing
// into data of its own, then decodes each.
func (tp *ThreadParasite) Queries(qs ...Query) error {
	var calls []Call
	starts, offs := make([]int, len(qs)), make([]uint64, len(qs))
	var off uint64
	for i, q := range qs {
		starts[i], offs[i] = len(calls), off
		calls = append(calls, q.Calls(tp.Data()+off)...)
		off += uint64(q.DataSize+7) &^ 7
	}
	if off > DataSize {
		return fmt.Errorf("pid %d: queries write %d bytes, more than %d", tp.v.t.Pid, off, DataSize)
	}
	res, err := tp.Batch(calls)
	if err != nil {
		return err
	}
	data := make([]byte, off)
	if err := tp.Read(tp.Data(), data); err != nil {
		return err
	}
	for i, q := range qs {
		end := len(calls)
		if i+1 < len(qs) {
			end = starts[i+1]
		}
		if err := q.Decode(res[starts[i]:end], data[offs[i]:offs[i]+uint64(q.DataSize)]); err != nil {
			return err
		}
	}
	return nil
}
