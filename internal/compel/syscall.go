package compel

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Syscall makes the task run system call nr with args, using the `syscall`
// instruction (0f 05) at address insn in the task, and returns the raw
// result (a negative errno on failure). The task is single-stepped over
// that one instruction, so nothing needs to follow it in memory; the task
// stops right after the call returns, even if the call unmapped insn.
//
// Injected registers carry orig_rax = -1 so that the kernel's syscall
// restart logic does not rewrite them as it would for a task frozen inside
// a system call. The registers are left as the call left them: callers
// restore what they need.
func (t *Task) Syscall(insn uint64, nr uintptr, args ...uint64) (uint64, error) {
	r, err := t.Regs()
	if err != nil {
		return 0, err
	}
	setSyscallRegs(&r, nr, args)
	enter(&r, insn)
	if err := t.SetRegs(&r); err != nil {
		return 0, err
	}
	if err := t.step(); err != nil {
		return 0, fmt.Errorf("syscall %d: %w", nr, err)
	}
	if r, err = t.Regs(); err != nil {
		return 0, err
	}
	return r.Rax, nil
}

// SyscallOK is Syscall that turns a negative result into an error.
func (t *Task) SyscallOK(insn uint64, nr uintptr, args ...uint64) (uint64, error) {
	ret, err := t.Syscall(insn, nr, args...)
	if err != nil {
		return 0, err
	}
	if e := errno(ret); e != 0 {
		return 0, fmt.Errorf("pid %d: syscall %d: %w", t.Pid, nr, e)
	}
	return ret, nil
}

func setSyscallRegs(r *Regs, nr uintptr, args []uint64) {
	var a [6]uint64
	copy(a[:], args)
	r.Rax = uint64(nr)
	r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
}

// step single-steps one instruction and waits for the trap. Events on the
// way (a fork reported by PTRACE_O_TRACEFORK) are noted and stepped past.
func (t *Task) step() error {
	if err := ptrace(unix.PTRACE_SINGLESTEP, t.Pid, 0, 0); err != nil {
		return fmt.Errorf("pid %d: single-step: %w", t.Pid, err)
	}
	return t.waitTrap(unix.PTRACE_SINGLESTEP)
}

// faults are the signals of a faulting instruction: in injected code
// they are amber's bug or a bad plan, never to be passed on.
var faults = map[unix.Signal]bool{unix.SIGSEGV: true, unix.SIGBUS: true, unix.SIGILL: true, unix.SIGFPE: true}

// waitTrap waits until the task stops with SIGTRAP, resuming it with req
// after event stops. A fault is an error. Any other signal that arrives
// meanwhile (a SIGCHLD from a zombie amber made, a restored timer's) stays
// pending, siginfo and all (keep).
func (t *Task) waitTrap(req int) error {
	for {
		ws, err := t.wait()
		if err != nil {
			return err
		}
		if cause := trapEvent(ws); cause > 0 {
			if cause == unix.PTRACE_EVENT_FORK || cause == unix.PTRACE_EVENT_CLONE {
				msg, err := unix.PtraceGetEventMsg(t.Pid)
				if err != nil {
					return fmt.Errorf("pid %d: event message: %w", t.Pid, err)
				}
				t.NewChild = int(msg)
			}
			if err := ptrace(req, t.Pid, 0, 0); err != nil {
				return fmt.Errorf("pid %d: resume after event %d: %w", t.Pid, cause, err)
			}
			continue
		}
		sig := ws.StopSignal()
		if sig == unix.SIGTRAP {
			return nil
		}
		if faults[sig] {
			r, _ := t.Regs()
			return fmt.Errorf("pid %d: %v at rip %#x", t.Pid, sig, r.Rip)
		}
		kept, err := t.keep(sig)
		if err != nil {
			return err
		}
		if err := ptrace(req, t.Pid, 0, uintptr(kept)); err != nil {
			return fmt.Errorf("pid %d: resume after %v: %w", t.Pid, sig, err)
		}
	}
}
