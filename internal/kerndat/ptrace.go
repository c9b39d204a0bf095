package kerndat

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rseqConfigSize is sizeof(struct ptrace_rseq_configuration).
const rseqConfigSize = 32

// ptraceProbes are the answers of probePtrace.
type ptraceProbes struct {
	seize, rseq, seccompSuspend, seccompFilters Status
}

// probePtrace seizes a sleeping child, interrupts it, and asks for its rseq
// configuration and its seccomp filters, and to suspend its seccomp. The
// child is killed and reaped before returning.
//
// Every ptrace and wait4 call must come from the tracing thread, hence the
// locked OS thread.
func probePtrace() ptraceProbes {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid, err := startSleeper()
	if err != nil {
		s := missing("cannot start a child to trace: %w", err)
		return ptraceProbes{s, s, s, s}
	}
	defer killAndReap(pid)
	if err := seizeAndInterrupt(pid); err != nil {
		s := missing("needs PTRACE_SEIZE: %w", err)
		return ptraceProbes{missing("%w", err), s, s, s}
	}
	return ptraceProbes{present(), probeRseqConfig(pid), probeSeccompSuspend(pid), probeSeccompFilters(pid)}
}

// probeSeccompSuspend sets PTRACE_O_SUSPEND_SECCOMP on a tracee: it needs
// CAP_SYS_ADMIN, a tracer not under seccomp, CONFIG_CHECKPOINT_RESTORE.
func probeSeccompSuspend(pid int) Status {
	if err := ptrace(unix.PTRACE_SETOPTIONS, pid, 0, unix.PTRACE_O_EXITKILL|unix.PTRACE_O_SUSPEND_SECCOMP); err != nil {
		return missing("PTRACE_O_SUSPEND_SECCOMP: %w", err)
	}
	return present()
}

// probeSeccompFilters asks a tracee without seccomp for its first filter:
// a kernel that can answer says EINVAL (not in filter mode), one that
// cannot EIO (an unknown request, or no CONFIG_SECCOMP_FILTER).
func probeSeccompFilters(pid int) Status {
	var insn [8]byte
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(pid), 0,
		uintptr(unsafe.Pointer(&insn[0])), 0, 0)
	if errno == unix.EINVAL || errno == unix.ENOENT {
		return present()
	}
	return missing("PTRACE_SECCOMP_GET_FILTER: %w", errno)
}

func startSleeper() (int, error) {
	var last error
	for _, bin := range []string{"/bin/sleep", "/usr/bin/sleep"} {
		pid, err := syscall.ForkExec(bin, []string{"sleep", "30"}, &syscall.ProcAttr{})
		if err == nil {
			return pid, nil
		}
		last = fmt.Errorf("%s: %w", bin, err)
	}
	return 0, last
}

// seizeAndInterrupt attaches to pid with PTRACE_SEIZE and waits for the
// group-stop PTRACE_INTERRUPT causes.
func seizeAndInterrupt(pid int) error {
	if err := ptrace(unix.PTRACE_SEIZE, pid, 0, unix.PTRACE_O_EXITKILL); err != nil {
		return fmt.Errorf("PTRACE_SEIZE: %w", err)
	}
	if err := ptrace(unix.PTRACE_INTERRUPT, pid, 0, 0); err != nil {
		return fmt.Errorf("PTRACE_INTERRUPT: %w", err)
	}
	var ws unix.WaitStatus
	if _, err := wait4(pid, &ws); err != nil {
		return fmt.Errorf("wait for PTRACE_INTERRUPT stop: %w", err)
	}
	if !ws.Stopped() || ws.TrapCause() != unix.PTRACE_EVENT_STOP {
		return fmt.Errorf("PTRACE_INTERRUPT: unexpected wait status %#x", uint32(ws))
	}
	return nil
}

// probeRseqConfig asks a stopped tracee for its rseq configuration; the
// kernel answers with the size it wrote, or EIO for an unknown request.
func probeRseqConfig(pid int) Status {
	var conf [rseqConfigSize]byte
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GET_RSEQ_CONFIGURATION, uintptr(pid),
		uintptr(len(conf)), uintptr(unsafe.Pointer(&conf[0])), 0, 0)
	if errno != 0 {
		return missing("PTRACE_GET_RSEQ_CONFIGURATION: %w", errno)
	}
	return present()
}

func killAndReap(pid int) {
	unix.Kill(pid, unix.SIGKILL)
	var ws unix.WaitStatus
	for {
		if _, err := wait4(pid, &ws); err != nil || ws.Exited() || ws.Signaled() {
			return
		}
	}
}

// wait4 waits for any state change of pid, retrying on EINTR.
func wait4(pid int, ws *unix.WaitStatus) (int, error) {
	for {
		wpid, err := unix.Wait4(pid, ws, unix.WALL, nil)
		if !errors.Is(err, unix.EINTR) {
			return wpid, err
		}
	}
}

func ptrace(req int, pid int, addr, data uintptr) error {
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(pid), addr, data, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
