package kerndat

import "golang.org/x/sys/unix"

// probeCgroupns looks for /proc/self/ns/cgroup (Linux 4.6+).
func probeCgroupns() Status {
	if err := unix.Access("/proc/self/ns/cgroup", unix.F_OK); err != nil {
		return missing("/proc/self/ns/cgroup: %w", err)
	}
	return present()
}
