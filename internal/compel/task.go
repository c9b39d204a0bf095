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
}

// keep makes a signal the task stopped to receive stay pending, with its
// siginfo: the task blocks it, and the kernel queues again a blocked
// signal its tracer resumes the task with (ptrace_signal). It returns the
// signal to resume with. SIGSTOP is dropped: a task amber stops is not
// stopped for its job control. Whoever releases the task sets its signal
// mask first.
func (t *Task) keep(sig unix.Signal) (unix.Signal, error) {
	if sig == unix.SIGSTOP {
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
func (t *Task) waitInterrupted() error {
	for {
		ws, err := t.wait()
		if err != nil {
			return err
		}
		if ws.StopSignal() == unix.SIGTRAP && ws.TrapCause() == unix.PTRACE_EVENT_STOP {
			return nil
		}
		if ws.TrapCause() == unix.PTRACE_EVENT_STOP {
			// Group stop of an already stopped task: frozen as well.
			return nil
		}
		if err := ptrace(unix.PTRACE_CONT, t.Pid, 0, uintptr(ws.StopSignal())); err != nil {
			return fmt.Errorf("pid %d: pass signal %v: %w", t.Pid, ws.StopSignal(), err)
		}
	}
}

// Detach releases the task; it continues from its current registers and
// signal mask.
func (t *Task) Detach() error {
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
