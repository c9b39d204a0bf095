package kerndat

import (
	"golang.org/x/sys/unix"

	"amber/internal/uffd"
)

// probeUserfaultfd creates a userfaultfd and runs the UFFDIO_API handshake,
// which reports every feature the kernel offers.
func probeUserfaultfd() (Status, uint64) {
	fd, err := uffd.Open(unix.O_CLOEXEC | unix.O_NONBLOCK)
	if err != nil {
		return missing("%w", err), 0
	}
	defer unix.Close(fd)
	features, err := uffd.API(fd, 0)
	if err != nil {
		return missing("%w", err), 0
	}
	return present(), features
}

// uffdFeature derives the status of one UFFD_FEATURE_* from the handshake.
func uffdFeature(status Status, features, want uint64, name string) Status {
	if !status.Present {
		return missing("needs userfaultfd: %w", status.Err)
	}
	if features&want != want {
		return missing("%s not offered by UFFDIO_API (features %#x)", name, features)
	}
	return present()
}
