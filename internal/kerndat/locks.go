package kerndat

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// probeFdinfoLock takes an flock on a memfd of its own and looks for it
// among the "lock:" lines of the descriptor's fdinfo (Linux 4.1+), where
// a dump learns which descriptor holds each file lock.
func probeFdinfoLock() Status {
	fd, err := unix.MemfdCreate("amber-fdinfo-lock", unix.MFD_CLOEXEC)
	if err != nil {
		return missing("memfd_create: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return missing("flock: %w", err)
	}
	path := fmt.Sprintf("/proc/self/fdinfo/%d", fd)
	b, err := os.ReadFile(path)
	if err != nil {
		return missing("%w", err)
	}
	if !strings.Contains(string(b), "lock:\t") {
		return missing("%s shows no lock: line for a flock", path)
	}
	return present()
}
