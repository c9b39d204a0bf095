package kerndat

import "golang.org/x/sys/unix"

// ProbeTimerIDs asks prctl(PR_TIMER_CREATE_RESTORE_IDS) (Linux 6.15),
// by which a restore gives POSIX timers their IDs, for its state: older
// kernels answer EINVAL. A restore probes it alone, being cheap, rather
// than through Probe.
func ProbeTimerIDs() Status {
	if _, err := unix.PrctlRetInt(unix.PR_TIMER_CREATE_RESTORE_IDS, unix.PR_TIMER_CREATE_RESTORE_IDS_GET, 0, 0, 0); err != nil {
		return missing("prctl(PR_TIMER_CREATE_RESTORE_IDS): %w", err)
	}
	return present()
}
