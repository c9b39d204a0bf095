package kerndat

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// userfaultfd ABI numbers (linux/userfaultfd.h).
const (
	uffdUserModeOnly  = 1          // UFFD_USER_MODE_ONLY
	uffdAPI           = 0xaa       // UFFD_API
	uffdioAPI         = 0xc018aa3f // _IOWR(0xAA, 0x3F, struct uffdio_api)
	userfaultfdIOCNew = 0xaa00     // _IO(0xAA, 0x00) on /dev/userfaultfd

	uffdFeatureEventFork   = 1 << 1
	uffdFeatureEventRemap  = 1 << 2
	uffdFeatureEventRemove = 1 << 3
	uffdFeatureEventUnmap  = 1 << 6
	uffdFeatureWPAsync     = 1 << 15

	// uffdFeaturesNonCoop are the events CRIU's "uffd-noncoop" needs.
	uffdFeaturesNonCoop = uffdFeatureEventFork | uffdFeatureEventRemap | uffdFeatureEventRemove | uffdFeatureEventUnmap
)

// uffdioAPIArg is struct uffdio_api.
type uffdioAPIArg struct{ API, Features, Ioctls uint64 }

// probeUserfaultfd creates a userfaultfd and runs the UFFDIO_API handshake,
// which reports every feature the kernel offers.
func probeUserfaultfd() (Status, uint64) {
	fd, err := openUserfaultfd()
	if err != nil {
		return missing("%w", err), 0
	}
	defer unix.Close(fd)
	arg := uffdioAPIArg{API: uffdAPI}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uffdioAPI, uintptr(unsafe.Pointer(&arg)))
	if errno != 0 {
		return missing("ioctl(UFFDIO_API): %w", errno), 0
	}
	return present(), arg.Features
}

// openUserfaultfd tries the userfaultfd syscall, then with
// UFFD_USER_MODE_ONLY (allowed to the unprivileged), then /dev/userfaultfd.
func openUserfaultfd() (int, error) {
	const flags = unix.O_CLOEXEC | unix.O_NONBLOCK
	var errs []error
	for _, f := range []uintptr{flags, flags | uffdUserModeOnly} {
		fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, f, 0, 0)
		if errno == 0 {
			return int(fd), nil
		}
		errs = append(errs, fmt.Errorf("userfaultfd(%#x): %w", f, errno))
	}
	fd, err := openUffdDevice(flags)
	if err == nil {
		return fd, nil
	}
	return -1, errors.Join(append(errs, err)...)
}

func openUffdDevice(flags uintptr) (int, error) {
	const path = "/dev/userfaultfd"
	dev, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(dev)
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(dev), userfaultfdIOCNew, flags)
	if errno != 0 {
		return -1, fmt.Errorf("%s: USERFAULTFD_IOC_NEW: %w", path, errno)
	}
	return int(fd), nil
}

// uffdFeature derives the status of one UFFD_FEATURE_* from the handshake.
func uffdFeature(uffd Status, features, want uint64, name string) Status {
	if !uffd.Present {
		return missing("needs userfaultfd: %w", uffd.Err)
	}
	if features&want != want {
		return missing("%s not offered by UFFDIO_API (features %#x)", name, features)
	}
	return present()
}
