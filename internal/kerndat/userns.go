package kerndat

import (
	"golang.org/x/sys/unix"
)

// probeUserns looks for user namespaces (/proc/self/ns/user) and the
// ioctl that tells a namespace's parent (NS_GET_PARENT, Linux 4.9),
// which a dump uses to refuse a user namespace nested deeper than one
// below amber's.
func probeUserns() Status {
	fd, err := unix.Open("/proc/self/ns/user", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return missing("/proc/self/ns/user: %w", err)
	}
	defer unix.Close(fd)
	parent, err := unix.IoctlRetInt(fd, unix.NS_GET_PARENT)
	if err == nil {
		unix.Close(parent)
	}
	// amber's own namespace has no parent it may see when it is the
	// initial one: EPERM says the ioctl exists.
	if err != nil && err != unix.EPERM {
		return missing("NS_GET_PARENT: %w", err)
	}
	return present()
}
