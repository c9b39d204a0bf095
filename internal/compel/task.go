package compel

import (
	"errors"
	"fmt"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Task is one thread traced by the calling OS thread.
type Task struct {
	Pid int
	// Timeout bounds each wait for the task to stop or die;
	// DefaultTimeout if zero.
	Timeout time.Duration
	// owned: amber made the task (a restore's). A wait that times out
	// kills it, which ends the wait at once; a task amber seized is
	// left alone, and waited for by a goroutine that may stay behind.
	owned bool
	// NewChild is the PID of the last child the task forked while amber
	// made it run a system call (PTRACE_O_TRACEFORK).
	NewChild int
	// opts are the PTRACE_O_* options the task is traced with, which
	// PTRACE_SETOPTIONS replaces as a whole.
	opts int
	// groupStop is the signal of the job-control stop (SIGSTOP, SIGTSTP,
	// SIGTTIN, SIGTTOU) the task was in when amber stopped it, 0 if none.
	groupStop unix.Signal
	// swallowed: a SIGSTOP reached the task while amber drove it, and
	// amber did not let it stop (keep).
	swallowed bool
}

// StopSignal says whether the task is stopped for its job control: the
// signal of the group stop it was in when amber stopped it, or SIGSTOP
// if one reached it while amber held it; 0 if neither.
func (t *Task) StopSignal() unix.Signal {
	if t.groupStop == 0 && t.swallowed {
		return unix.SIGSTOP
	}
	return t.groupStop
}

// keep makes a signal the task stopped to receive stay pending, with its
// siginfo: the task blocks it, and the kernel queues again a blocked
// signal its tracer resumes the task with (ptrace_signal). It returns the
// signal to resume with. SIGSTOP, which cannot be blocked, is noted and
// dropped: a task stopped for its job control would not run what amber
// makes it run; Detach sends it again. Whoever releases the task sets its
// signal mask first.
func (t *Task) keep(sig unix.Signal) (unix.Signal, error) {
	if sig == unix.SIGSTOP {
		t.swallowed = true
		return 0, nil
	}
	m, err := t.SigMask()
	if err != nil {
		return 0, err
	}
	if err := t.SetSigMask(m | 1<<(sig-1)); err != nil {
		return 0, err
	}
	return sig, nil
}

// ErrGone is returned when a traced task died under amber.
var ErrGone = errors.New("task is gone")

// Seize attaches to pid without stopping it, then interrupts it and waits,
// at most timeout (DefaultTimeout if zero), until it is frozen. The task
// does not notice: no signal is sent, and a system call it was blocked in
// is restarted when it is released.
func Seize(pid int, timeout time.Duration) (*Task, error) {
	t, err := Attach(pid, timeout)
	if err != nil {
		return nil, err
	}
	if err := t.WaitFrozen(); err != nil {
		return nil, err
	}
	return t, nil
}

// Attach is the first half of Seize: it attaches to pid and asks it to
// stop, without waiting. Attaching many tasks before waiting for any lets
// them stop at once.
func Attach(pid int, timeout time.Duration) (*Task, error) {
	// Syscall stops report SIGTRAP|0x80: should amber die while the task
	// is in one, the kernel sends that code to the task as a signal,
	// which, not being a valid signal, is dropped; a bare SIGTRAP would
	// kill it.
	if err := ptrace(unix.PTRACE_SEIZE, pid, 0, unix.PTRACE_O_TRACESYSGOOD); err != nil {
		return nil, fmt.Errorf("seize pid %d: %w", pid, err)
	}
	t := &Task{Pid: pid, Timeout: timeout, opts: unix.PTRACE_O_TRACESYSGOOD}
	if err := ptrace(unix.PTRACE_INTERRUPT, pid, 0, 0); err != nil {
		t.Detach()
		return nil, fmt.Errorf("interrupt pid %d: %w", pid, err)
	}
	return t, nil
}

// WaitFrozen is the second half of Seize: it waits until the task
// Attach asked to stop has stopped. On error the task is detached.
func (t *Task) WaitFrozen() error {
	if err := t.waitInterrupted(); err != nil {
		t.Detach()
		return err
	}
	return nil
}

// waitInterrupted waits for the stop PTRACE_INTERRUPT asked for. A signal
// that arrives first is passed on: its handler frame is then part of the
// state we freeze, which is as consistent as any other instant.
//
// A task in a group stop (SIGSTOP and the like) reports the interrupt
// with the stop's signal, and the group stop holds while it is traced:
// the kernel stops it again when amber detaches it. Seizing a task
// already stopped traps it once at the seize and once more for the
// interrupt; amber makes sure no such trap is left pending (interrupt,
// resume, wait), or the task would stop again at once wherever amber next
// lets it run, say into the parasite, and nobody would wait for it.
//
// Any ptrace stop clears a pending interrupt, a signal's too: a signal
// the task took between the interrupt and its next look at its job
// control answers the interrupt in its place. So each signal passed on
// is followed by another interrupt, or the task would run on and the
// wait would see only its next signal (a task whose timers fire forever
// kept amber waiting forever). The whole wait, not each stop, is bounded
// by the task's timeout.
func (t *Task) waitInterrupted() error {
	deadline := time.Now().Add(t.waitLimit())
	drained := false
	for {
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d: not stopped within %v, signals kept arriving: %w", t.Pid, t.waitLimit(), ErrTimeout)
		}
		ws, err := t.wait()
		if err != nil {
			return err
		}
		if trapEvent(ws) == unix.PTRACE_EVENT_STOP {
			sig := ws.StopSignal()
			if sig == unix.SIGTRAP || drained {
				return nil
			}
			t.groupStop, drained = sig, true
			if err := t.drainStop(); err != nil {
				return err
			}
			continue
		}
		if err := ptrace(unix.PTRACE_INTERRUPT, t.Pid, 0, 0); err != nil {
			return fmt.Errorf("pid %d: interrupt: %w", t.Pid, err)
		}
		if err := ptrace(unix.PTRACE_CONT, t.Pid, 0, uintptr(ws.StopSignal())); err != nil {
			return fmt.Errorf("pid %d: pass signal %v: %w", t.Pid, ws.StopSignal(), err)
		}
	}
}

// resumeIfStopped resumes the task, which amber let run, if it has
// stopped since, and says whether it had: at a trap for its job control
// (a SIGCONT's, or a group stop's, whose signal it notes), or for a
// signal, which it passes on (a SIGSTOP begins the group stop, whose trap
// comes next).
func (t *Task) resumeIfStopped() (bool, error) {
	var ws unix.WaitStatus
	got, err := unix.Wait4(t.Pid, &ws, unix.WALL|unix.WNOHANG, nil)
	if err != nil {
		return false, fmt.Errorf("wait pid %d: %w", t.Pid, err)
	}
	switch {
	case got == 0:
		return false, nil
	case ws.Exited() || ws.Signaled():
		return false, fmt.Errorf("pid %d ended: %w", t.Pid, ErrGone)
	}
	sig := ws.StopSignal()
	if trapEvent(ws) != 0 {
		if sig != unix.SIGTRAP {
			t.groupStop = sig
		}
		sig = 0
	}
	if err := ptrace(unix.PTRACE_CONT, t.Pid, 0, uintptr(sig)); err != nil {
		return true, fmt.Errorf("pid %d: resume after a stop for %v: %w", t.Pid, ws.StopSignal(), err)
	}
	return true, nil
}

// drainStop takes the task, in a group-stop trap, through one more
// interrupt trap: a trap PTRACE_INTERRUPT left pending is taken then, and
// none is left. The task runs no code of its own on the way: the kernel
// takes a pending trap before it looks at signals or returns to user
// space.
func (t *Task) drainStop() error {
	if err := ptrace(unix.PTRACE_INTERRUPT, t.Pid, 0, 0); err != nil {
		return fmt.Errorf("pid %d: interrupt: %w", t.Pid, err)
	}
	if err := ptrace(unix.PTRACE_CONT, t.Pid, 0, 0); err != nil {
		return fmt.Errorf("pid %d: resume a stopped task to its interrupt: %w", t.Pid, err)
	}
	return nil
}

// trapEvent is the PTRACE_EVENT_* of a ptrace event stop, whatever its
// signal (a group-stop trap reports the stop's), 0 for any other stop.
// unix.WaitStatus.TrapCause sees only those reported with SIGTRAP.
func trapEvent(ws unix.WaitStatus) int {
	if !ws.Stopped() {
		return 0
	}
	return int(ws>>16) & 0xff
}

// Detach releases the task; it continues from its current registers and
// signal mask. A task in a group stop when amber stopped it stops again
// (the kernel sees to it); one that got a SIGSTOP amber swallowed is sent
// SIGSTOP again, which it takes before running any code.
func (t *Task) Detach() error {
	if t.swallowed && t.groupStop == 0 {
		unix.Syscall(unix.SYS_TKILL, uintptr(t.Pid), uintptr(unix.SIGSTOP), 0)
	}
	if err := ptrace(unix.PTRACE_DETACH, t.Pid, 0, 0); err != nil {
		return fmt.Errorf("detach pid %d: %w", t.Pid, err)
	}
	return nil
}

// Kill kills the task and reaps it if it is amber's child.
func (t *Task) Kill() {
	unix.Kill(t.Pid, unix.SIGKILL)
	t.WaitDead()
}

// SetOptions sets PTRACE_O_* options.
func (t *Task) SetOptions(opts int) error {
	if err := ptrace(unix.PTRACE_SETOPTIONS, t.Pid, 0, uintptr(opts)); err != nil {
		return fmt.Errorf("pid %d: set ptrace options: %w", t.Pid, err)
	}
	t.opts = opts
	return nil
}

func ptrace(req, pid int, addr, data uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(pid), addr, data, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func ptracePtr(req, pid int, addr uintptr, data unsafe.Pointer) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(pid), addr, uintptr(data), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// errno extracts a syscall error number from a raw return value.
func errno(ret uint64) syscall.Errno {
	if ret > ^uint64(4095) {
		return syscall.Errno(-int64(ret))
	}
	return 0
}
