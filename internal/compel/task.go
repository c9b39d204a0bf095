package compel

import (
	"errors"
	"fmt"
	"slices"
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
	// NewChild is the PID of the last child the task forked while amber
	// made it run a system call (PTRACE_O_TRACEFORK).
	NewChild int
	// held are signals that arrived while amber drove the task, to be
	// delivered when it is released.
	held []unix.Signal
}

// hold keeps sig for delivery at Detach. SIGSTOP is not kept: a task
// amber stops is not stopped for its job control.
func (t *Task) hold(sig unix.Signal) {
	if sig == unix.SIGSTOP || slices.Contains(t.held, sig) {
		return
	}
	t.held = append(t.held, sig)
}

// ErrGone is returned when a traced task died under amber.
var ErrGone = errors.New("task is gone")

// Seize attaches to pid without stopping it, then interrupts it and waits,
// at most timeout (DefaultTimeout if zero), until it is frozen. The task
// does not notice: no signal is sent, and a system call it was blocked in
// is restarted when it is released.
func Seize(pid int, timeout time.Duration) (*Task, error) {
	// Syscall stops report SIGTRAP|0x80: should amber die while the task
	// is in one, the kernel sends that code to the task as a signal,
	// which, not being a valid signal, is dropped; a bare SIGTRAP would
	// kill it.
	if err := ptrace(unix.PTRACE_SEIZE, pid, 0, unix.PTRACE_O_TRACESYSGOOD); err != nil {
		return nil, fmt.Errorf("seize pid %d: %w", pid, err)
	}
	t := &Task{Pid: pid, Timeout: timeout}
	if err := ptrace(unix.PTRACE_INTERRUPT, pid, 0, 0); err != nil {
		t.Detach()
		return nil, fmt.Errorf("interrupt pid %d: %w", pid, err)
	}
	if err := t.waitInterrupted(); err != nil {
		t.Detach()
		return nil, err
	}
	return t, nil
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

// Detach releases the task; it continues from its current registers, with
// the signals held back while amber drove it pending again.
func (t *Task) Detach() error {
	var sig unix.Signal
	if len(t.held) > 0 {
		sig = t.held[0]
		for _, s := range t.held[1:] {
			unix.Tgkill(t.Pid, t.Pid, s)
		}
	}
	if err := ptrace(unix.PTRACE_DETACH, t.Pid, 0, uintptr(sig)); err != nil {
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
