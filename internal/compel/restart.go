package compel

// A task frozen inside a system call shows its number in orig_rax and one
// of the kernel's restart codes in rax. These helpers decide what such a
// task continues with: the dumped one after a restore (ReleaseRegs), or
// one the parasite gives back through rt_sigreturn (resumeRegs).

import "golang.org/x/sys/unix"

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
