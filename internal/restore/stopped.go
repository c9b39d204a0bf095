package restore

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// stopAgain sends a process dumped stopped for its job control its stop
// signal while amber still holds it: it takes the signal as it is let go,
// before running any code of its own, and stops as it was, its parent
// told as by any stop.
func stopAgain(p *process) error {
	tc := p.t.core.GetTc()
	if tc.GetTaskState() != taskStopped {
		return nil
	}
	sig := stopSignal(tc.GetStopSigno(), p.t.core.GetThreadCore().GetBlkSigset())
	if err := unix.Kill(p.threads[0].Pid, sig); err != nil {
		return fmt.Errorf("pid %d: stop it again with %v: %w", p.t.pid, sig, err)
	}
	return nil
}

// stopSignal is the signal that stops a process dumped stopped by signo
// and blocking mask: signo itself if it is a stop signal that would stop
// it, else SIGSTOP, which always does. A job-control stop (SIGTSTP,
// SIGTTIN, SIGTTOU) keeps the number its parent sees in waitid.
func stopSignal(signo uint32, mask uint64) unix.Signal {
	sig := unix.Signal(signo)
	switch sig {
	case unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
		if mask&(1<<(sig-1)) == 0 {
			return sig
		}
	}
	return unix.SIGSTOP
}
