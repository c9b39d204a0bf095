package dump

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// taskStopped is CRIU's task state of a process stopped for its job
// control (compel's task-state.h).
const taskStopped = 3

// stopSignal is the signal that holds the process stopped for its job
// control, 0 if it runs: the group stop its threads were in when frozen,
// else SIGSTOP if one was pending or came while it was dumped (CRIU dumps
// such a process stopped too). A restore stops it again with it.
func (ps *procState) stopSignal() unix.Signal {
	for _, t := range ps.frozenProc.threads {
		if s := t.StopSignal(); s != 0 {
			return s
		}
	}
	if queued(ps.shared, unix.SIGSTOP) {
		return unix.SIGSTOP
	}
	for _, th := range ps.threads {
		if queued(th.pending, unix.SIGSTOP) {
			return unix.SIGSTOP
		}
	}
	return 0
}

// withoutStops drops from a stopped process's signal queue the stop
// signals its stop makes moot: SIGSTOP, and the job-control stops that
// are not blocked (mask). Queued behind a stop, they would be taken only
// to stop it again, which the restore does; the SIGCONT that ends the
// stop discards them all.
func withoutStops(q [][]byte, mask uint64) [][]byte {
	var out [][]byte
	for _, si := range q {
		sig := signo(si)
		switch {
		case sig == unix.SIGSTOP:
		case jobStop(sig) && mask&(1<<(sig-1)) == 0:
		default:
			out = append(out, si)
		}
	}
	return out
}

// jobStop reports whether sig is a job-control stop signal other than
// SIGSTOP, which a process may block or handle.
func jobStop(sig unix.Signal) bool {
	return sig == unix.SIGTSTP || sig == unix.SIGTTIN || sig == unix.SIGTTOU
}

func queued(q [][]byte, sig unix.Signal) bool {
	for _, si := range q {
		if signo(si) == sig {
			return true
		}
	}
	return false
}

// signo is the signal number of a siginfo_t.
func signo(si []byte) unix.Signal {
	if len(si) < 4 {
		return 0
	}
	return unix.Signal(binary.LittleEndian.Uint32(si))
}
