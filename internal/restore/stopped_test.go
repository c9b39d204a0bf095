package restore

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestStopSignal: a job-control stop keeps its signal unless blocked;
// anything else, CRIU's images without one included, stops with SIGSTOP.
func TestStopSignal(t *testing.T) {
	bit := func(s unix.Signal) uint64 { return 1 << (s - 1) }
	for _, c := range []struct {
		signo uint32
		mask  uint64
		want  unix.Signal
	}{
		{uint32(unix.SIGSTOP), 0, unix.SIGSTOP},
		{uint32(unix.SIGTSTP), 0, unix.SIGTSTP},
		{uint32(unix.SIGTTIN), bit(unix.SIGTSTP), unix.SIGTTIN},
		{uint32(unix.SIGTTOU), bit(unix.SIGTTOU), unix.SIGSTOP},
		{0, 0, unix.SIGSTOP},
		{uint32(unix.SIGUSR1), 0, unix.SIGSTOP},
	} {
		if got := stopSignal(c.signo, c.mask); got != c.want {
			t.Errorf("stopSignal(%d, %#x) = %v, want %v", c.signo, c.mask, got, c.want)
		}
	}
}
