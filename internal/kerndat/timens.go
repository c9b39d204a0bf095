package kerndat

import "golang.org/x/sys/unix"

// probeTimens looks for /proc/self/timens_offsets (Linux 5.6+), through
// which a dump reads a time namespace's clock offsets and a restore sets
// those of a new one.
func probeTimens() Status {
	if err := unix.Access("/proc/self/timens_offsets", unix.F_OK); err != nil {
		return missing("/proc/self/timens_offsets: %w", err)
	}
	return present()
}
