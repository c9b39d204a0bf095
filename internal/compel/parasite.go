package compel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"amber/internal/cpu"
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
// sees the socket's end of file when amber dies, and returns to the
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
	// escaped: the routine gave up waiting for amber and led the thread
	// back, so it ran on; amber stopped it again where it got to.
	escaped bool
}

// blockAll is the signal mask threads run the routine with: no handler
// of the process may run while it is dumped.
const blockAll = ^uint64(0)

// Infect places the parasite in the process of threads, all frozen, the
// leader first; layout tells where to find code and the main stack. While
// infected the threads run on the CPUs of pin, which should be the
// tracer's: a ptrace round trip between tasks of one CPU wakes no other.
// On error every thread is back as it was, except that a failure in
// mapping the scratch area may leave it mapped.
func Infect(threads []*Task, layout Layout, pin unix.CPUSet) (*Parasite, error) {
	leader := threads[0]
	p := &Parasite{timeout: leader.waitLimit(), ctlFd: -1, pin: pin, layout: layout}
	areas := make([]threadArea, len(threads))
	size := uint64(areasOffset)
	for i, t := range threads {
		a, frozen, err := freezeArea(t, i == 0)
		if err != nil {
			return nil, fmt.Errorf("pid %d: infect: %w", t.Pid, err)
		}
		areas[i] = a
		v := &victim{t: t, area: size, frozen: frozen, mask: a.mask, cpus: a.cpus, frame: a.sigFrame}
		p.threads = append(p.threads, v)
		size += uint64(areaSize(len(a.fpstate)))
	}
	p.size = (size + pageSize - 1) &^ (pageSize - 1)
	if err := p.start(areas); err != nil {
		p.Cure()
		return nil, fmt.Errorf("pid %d: infect: %w", leader.Pid, err)
	}
	return p, nil
}

const pageSize = 4096

// freezeArea learns what a thread's area must hold: the registers, mask,
// FPU state and affinity it is frozen with. It also returns the frozen
// registers.
func freezeArea(t *Task, leader bool) (threadArea, Regs, error) {
	a := threadArea{leader: leader, ctl: -1}
	frozen, err := t.Regs()
	if err != nil {
		return a, frozen, err
	}
	a.resume = resumeRegs(frozen)
	if a.mask, err = t.SigMask(); err != nil {
		return a, frozen, err
	}
	if a.cpus, err = t.Affinity(); err != nil {
		return a, frozen, err
	}
	xs, err := t.XState()
	if err != nil {
		return a, frozen, err
	}
	a.fpstate, err = cpu.SigframeXState(xs)
	return a, frozen, err
}

// start maps the scratch area, makes the leader set up the control socket
// and sends every thread into the routine. A thread is pinned once in the
// routine, which gives it back its CPUs by itself should amber die.
func (p *Parasite) start(areas []threadArea) error {
	leader := p.threads[0]
	var err error
	if p.g, err = findGadgets(leader.t, p.layout.Code); err != nil {
		return err
	}
	p.injector = leader
	for _, v := range p.threads {
		if _, ok := p.frameSlot(v); ok {
			p.injector = v
			break
		}
	}
	base, err := p.syscallIn(p.injector, unix.SYS_MMAP, 0, p.size, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
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
	if err := p.setUp(leader, areas[0]); err != nil {
		return err
	}
	if err := leader.t.SetAffinity(p.pin); err != nil {
		return err
	}
	for i, v := range p.threads[1:] {
		areas[i+1].ctl = p.ctlFd
		if err := p.enter(v, areas[i+1]); err != nil {
			return err
		}
		if err := v.t.SetAffinity(p.pin); err != nil {
			return err
		}
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

// syscallIn makes v, stopped, run one system call and brings it back to
// a signal stop at its frozen registers and mask. With the gadgets and
// room on the main stack for their frame, amber's death at any moment of
// it leaves v safe. Otherwise, from setting the call's registers until
// setting the frozen ones back, it would leave v running on from a bare
// `syscall` with foreign registers: a window of a few ptrace round trips.
func (p *Parasite) syscallIn(v *victim, nr uintptr, args ...uint64) (uint64, error) {
	r := v.frozen
	setSyscallRegs(&r, nr, args)
	r.Rip = p.g.syscall
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
	return ret, errors.Join(err, v.t.settle(&v.frozen, v.mask))
}

// enter writes v's area and sends v into the routine to wait. From the
// moment its registers point there, amber may die: the routine then
// leads it back.
func (p *Parasite) enter(v *victim, a threadArea) error {
	if err := v.t.WriteMem(v.area, a.encode(v.area)); err != nil {
		return err
	}
	r := v.frozen
	r.Rip, r.Orig_rax = p.base+entryWait, ^uint64(0)
	r.Rbx, r.R15 = v.area, uint64(p.ctlFd)
	return p.runRoutine(v, &r)
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
	if err := ptrace(unix.PTRACE_CONT, v.t.Pid, 0, 0); err != nil {
		return fmt.Errorf("pid %d: run parasite: %w", v.t.Pid, err)
	}
	return nil
}

// setUp makes the leader create the control socket, stepping it over
// socketpair, takes the end meant for amber (pidfd_getfd) and sends the
// leader to close its copy of that end and wait: then only amber holds
// it, and the routine sees end of file on the other end when amber is
// gone. Should amber die at the stop after socketpair, the leader goes on
// in the routine, which closes both ends and leads it back.
func (p *Parasite) setUp(v *victim, a threadArea) error {
	if err := v.t.WriteMem(v.area, a.encode(v.area)); err != nil {
		return err
	}
	r := v.frozen
	r.Rip, r.Orig_rax = p.base+entrySetup, ^uint64(0)
	r.Rbx, r.R15 = v.area, ^uint64(0)
	if err := v.t.SetRegs(&r); err != nil {
		return err
	}
	v.inside = true
	if err := v.t.SetSigMask(blockAll); err != nil {
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
	// Step it over the close, which a stop to run calls could skip.
	r.Rip, r.Orig_rax = p.base+entryCloseWait, ^uint64(0)
	r.Rdi, r.R15 = uint64(amber), uint64(ctl)
	ret, err = v.t.syscallStopped(&r)
	if err == nil && errno(ret) != 0 {
		err = fmt.Errorf("control socket: close: %w", errno(ret))
	}
	if err != nil {
		return err
	}
	return p.runRoutine(v, &r)
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
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	mine, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return fmt.Errorf("take control socket: pidfd_getfd: %w", err)
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
	r.Rip, r.Orig_rax = p.base+entryTable, ^uint64(0)
	r.R12, r.R13 = table, uint64(len(calls))
	if err := v.t.SetRegs(&r); err != nil {
		return nil, err
	}
	if err := ptrace(unix.PTRACE_CONT, v.t.Pid, 0, 0); err != nil {
		return nil, fmt.Errorf("pid %d: run parasite table: %w", v.t.Pid, err)
	}
	if err := p.awaitDone(v); err != nil {
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

// awaitDone waits for the routine's byte on the control socket.
func (p *Parasite) awaitDone(v *victim) error {
	fds := []unix.PollFd{{Fd: int32(p.ctl.Fd()), Events: unix.POLLIN}}
	deadline := time.Now().Add(p.timeout)
	for {
		n, err := unix.Poll(fds, int(max(time.Until(deadline), 0)/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("pid %d: wait for parasite: %w", v.t.Pid, err)
		}
		if n == 0 {
			return fmt.Errorf("pid %d: parasite did not finish: %w", v.t.Pid, ErrTimeout)
		}
		var b [1]byte
		m, err := unix.Read(int(p.ctl.Fd()), b[:])
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil || m == 0 {
			return fmt.Errorf("pid %d: parasite socket closed: %w", v.t.Pid, ErrGone)
		}
		return nil
	}
}

// results reads what the table of n calls left: each call's result, or
// the first that failed as a *TableError.
func (p *Parasite) results(v *victim, table uint64, n int) ([]uint64, error) {
	status := make([]byte, 16)
	if err := v.t.ReadMem(v.area+areaLeft, status); err != nil {
		return nil, err
	}
	raw := make([]byte, n*EntrySize)
	if err := v.t.ReadMem(table, raw); err != nil {
		return nil, err
	}
	if left := binary.LittleEndian.Uint64(status); left != 0 {
		at := int((binary.LittleEndian.Uint64(status[8:]) - table) / EntrySize)
		ret := binary.LittleEndian.Uint64(raw[at*EntrySize+56:])
		return nil, fmt.Errorf("pid %d: %w", v.t.Pid, &TableError{Index: at, Errno: errno(ret)})
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(raw[i*EntrySize+56:])
	}
	return out, nil
}

// Fds lists the descriptors the parasite holds in the process: a dump
// must not record them.
func (p *Parasite) Fds() []int {
	if p.ctlFd < 0 {
		return nil
	}
	return []int{p.ctlFd}
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
	for _, v := range p.threads[1:] {
		errs = append(errs, p.bringBack(v))
	}
	leader := p.threads[0]
	errs = append(errs, p.closeLeader(leader))
	if p.base != 0 && !leader.escaped {
		if _, err := p.syscallIn(p.injector, unix.SYS_MUNMAP, p.base, p.size); err != nil {
			errs = append(errs, fmt.Errorf("pid %d: unmap scratch area: %w", p.injector.t.Pid, err))
		}
		p.base = 0
	}
	if p.injector != leader {
		errs = append(errs, leader.t.settle(&leader.frozen, leader.mask))
	}
	errs = append(errs, leader.t.SetAffinity(leader.cpus))
	if p.ctl != nil {
		errs = append(errs, p.ctl.Close())
		p.ctl = nil
	}
	return errors.Join(errs...)
}

// bringBack stops a thread of the routine and gives it its frozen
// registers, mask and CPUs.
func (p *Parasite) bringBack(v *victim) error {
	if !v.inside {
		return nil
	}
	if _, err := p.stop(v); err != nil {
		return err
	}
	v.inside = false
	if err := v.t.SetRegs(&v.frozen); err != nil {
		return err
	}
	if err := v.t.SetSigMask(v.mask); err != nil {
		return err
	}
	return v.t.SetAffinity(v.cpus)
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
// r, close the process's end of the control socket and, if it still has
// it, its copy of amber's end. It runs close_ctl of the routine, which
// goes on into rt_sigreturn should amber die meanwhile.
func (p *Parasite) closeInLeader(v *victim, r *Regs) error {
	buf := make([]byte, 4)
	if err := v.t.ReadMem(v.area+areaAmberFd, buf); err != nil {
		return err
	}
	ctl := r.R15
	for _, fd := range []uint64{uint64(int64(int32(binary.LittleEndian.Uint32(buf)))), ctl} {
		if int64(fd) < 0 {
			continue
		}
		r.Rip, r.Orig_rax, r.R15 = p.base+entryCloseCtl, ^uint64(0), fd
		if _, err := v.t.syscallStopped(r); err != nil {
			return err
		}
	}
	return nil
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
		if ws.TrapCause() > 0 {
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
// run should amber die before it is done.
func (t *Task) settle(regs *Regs, mask uint64) error {
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
	if err := t.SetRegs(regs); err != nil {
		return err
	}
	return t.SetSigMask(mask)
}
