package compel

// A task frozen inside a system call shows its number in orig_rax and one
// of the kernel's restart codes in rax. These helpers decide what such a
// task continues with: the dumped one after a restore (ReleaseRegs), or
// one the parasite gives back through rt_sigreturn (resumeRegs).

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// ReleaseRegs sets up the registers of a task frozen inside a system
// call so that the kernel itself ends or restarts the call when the task
// is released, by the rules it would have applied had the task never
// stopped: the task is released from a signal stop, where the kernel looks
// at orig_rax and the -ERESTART* code in rax once it has delivered or not
// delivered a signal. With no handler to run, the call is re-entered with
// its arguments; once a handler runs, ERESTARTNOHAND fails with EINTR and
// ERESTARTSYS restarts only under SA_RESTART. This holds for a signal
// queued from the images as well as for one that arrives at any moment
// before the task runs again.
//
// A call the kernel would resume through restart_syscall (nanosleep,
// poll, a futex wait with a timeout) cannot be resumed: its saved state
// died with the old task. It is treated as ERESTARTNOHAND: re-entered with
// its timeout counted again from the restore, or EINTR if a handler runs.
// Returning EINTR with no handler, as CRIU does, makes programs that never
// expect it fail (tail -F quits on an interrupted poll). Only a frozen
// restart_syscall itself, whose original call is unknown, returns EINTR.
func ReleaseRegs(r *Regs) {
	if int64(r.Orig_rax) < 0 {
		return
	}
	switch -int64(r.Rax) {
	case errRestartSys, errRestartNoIntr, errRestartNoHand:
	case errRestartRestartBlock:
		if r.Orig_rax == unix.SYS_RESTART_SYSCALL {
			r.Rax = negErrno(unix.EINTR)
			r.Orig_rax = ^uint64(0)
			break
		}
		r.Rax = negErrno(errRestartNoHand)
	default:
		// Not interrupted: the call had returned. Nothing to restart.
		r.Orig_rax = ^uint64(0)
	}
}

// resumeRegs returns the registers a thread frozen with r continues with
// when the parasite's routine gives it back through rt_sigreturn, which
// clears orig_rax: a system call it was interrupted in is entered again,
// as the kernel does on its way back to user space when no handler runs
// (arch_do_signal_or_restart). A call the kernel would resume through
// restart_syscall is entered again from the start, its timeout counted
// anew: rt_sigreturn makes restart_syscall fail with EINTR.
func resumeRegs(r Regs) Regs {
	if int64(r.Orig_rax) >= 0 {
		switch -int64(r.Rax) {
		case errRestartSys, errRestartNoIntr, errRestartNoHand:
			r.Rax = r.Orig_rax
			r.Rip -= 2
		case errRestartRestartBlock:
			if r.Orig_rax == unix.SYS_RESTART_SYSCALL {
				r.Rax = negErrno(unix.EINTR)
				break
			}
			r.Rax = r.Orig_rax
			r.Rip -= 2
		}
	}
	r.Orig_rax = ^uint64(0)
	return r
}

// Kernel-internal results of an interrupted system call
// (include/linux/errno.h).
const (
	errRestartSys          = 512
	errRestartNoIntr       = 513
	errRestartNoHand       = 514
	errRestartRestartBlock = 516
)

// negErrno is -e as a system call returns it in rax.
func negErrno(e unix.Errno) uint64 { return uint64(-int64(e)) }

// ImageRegs returns the registers of a thread frozen with r as CRIU's
// images hold them, and the kernel's restart code it was frozen with (0
// if none). CRIU's restore sets the image's registers with rt_sigreturn,
// which ignores orig_rax, so an image holds a call to restart already
// restarted, as CRIU's compel_get_task_regs writes it: rax back to the
// call's number and rip on its syscall instruction (resumeRegs). orig_rax
// is kept. The code is for amber's own restore (KernelRegs), which keeps
// the kernel's rules on a signal that comes before the call is entered
// again.
func ImageRegs(r Regs) (Regs, uint64) {
	var code uint64
	if int64(r.Orig_rax) >= 0 {
		switch c := -int64(r.Rax); c {
		case errRestartSys, errRestartNoIntr, errRestartNoHand, errRestartRestartBlock:
			code = uint64(c)
		}
	}
	out := resumeRegs(r)
	out.Orig_rax = r.Orig_rax
	return out, code
}

// KernelRegs undoes ImageRegs: the registers of the frozen thread, from
// those of its image and the restart code amber recorded for it.
func KernelRegs(r Regs, code uint64) (Regs, error) {
	switch code {
	case 0:
		return r, nil
	case errRestartSys, errRestartNoIntr, errRestartNoHand, errRestartRestartBlock:
	default:
		return r, fmt.Errorf("restart code %d is not one of the kernel's", code)
	}
	if int64(r.Orig_rax) < 0 {
		return r, fmt.Errorf("restart code %d for a thread not in a system call (orig_rax %#x)", code, r.Orig_rax)
	}
	if code == errRestartRestartBlock && r.Orig_rax == unix.SYS_RESTART_SYSCALL {
		r.Rax = negErrno(errRestartRestartBlock)
		return r, nil
	}
	if r.Rax != r.Orig_rax {
		return r, fmt.Errorf("restart code %d, but rax %#x is not the call's number %d", code, r.Rax, r.Orig_rax)
	}
	r.Rax = negErrno(unix.Errno(code))
	r.Rip += 2
	return r, nil
}
