package kerndat

import (
	"os"
	"strings"
)

// probeNSpid looks for the NSpid line of /proc/self/status (Linux 4.1+):
// a task's PID in each PID namespace it is in, by which a dump from
// outside a tree's PID namespace learns the PIDs to restore it with.
func probeNSpid() Status {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return missing("%w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "NSpid:") {
			return present()
		}
	}
	return missing("/proc/self/status has no NSpid line")
}
