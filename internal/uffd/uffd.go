// Package uffd is amber's one door to the userfaultfd ABI
// (linux/userfaultfd.h): making a userfaultfd, its UFFDIO_API handshake,
// registering memory, and the ioctls that fill registered memory. Three
// parts of amber use it: the kernel probe (package kerndat), the tracking
// of written pages for incremental dumps (package mem, write protection
// in asynchronous mode) and lazy restore (package lazy, missing pages).
// What to ask for, and what an error means to each, stays with them.
//
// Every call takes the descriptor as an int and retries EINTR.
package uffd

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl numbers on a userfaultfd and on /dev/userfaultfd.
const (
	api         = 0xaa       // UFFD_API
	ioctlAPI    = 0xc018aa3f // _IOWR(0xaa, 0x3f, struct uffdio_api)
	ioctlReg    = 0xc020aa00 // _IOWR(0xaa, 0x00, struct uffdio_register)
	ioctlWake   = 0x8010aa02 // _IOR(0xaa, 0x02, struct uffdio_range)
	ioctlCopy   = 0xc028aa03 // _IOWR(0xaa, 0x03, struct uffdio_copy)
	ioctlZero   = 0xc020aa04 // _IOWR(0xaa, 0x04, struct uffdio_zeropage)
	ioctlPoison = 0xc020aa08 // _IOWR(0xaa, 0x08, struct uffdio_poison)
	ioctlDevNew = 0xaa00     // _IO(0xaa, 0x00), USERFAULTFD_IOC_NEW on /dev/userfaultfd
)

// UserModeOnly is UFFD_USER_MODE_ONLY, a flag of userfaultfd(2): the
// userfaultfd handles no fault taken in the kernel, and so may be made
// by a process without CAP_SYS_PTRACE where vm.unprivileged_userfaultfd
// is 0.
const UserModeOnly = 1

// Features of the UFFDIO_API handshake (UFFD_FEATURE_*).
const (
	FeatureEventFork        = 1 << 1
	FeatureEventRemap       = 1 << 2
	FeatureEventRemove      = 1 << 3
	FeatureEventUnmap       = 1 << 6
	FeatureWPHugetlbfsShmem = 1 << 12
	FeatureWPUnpopulated    = 1 << 13
	FeaturePoison           = 1 << 14
	FeatureWPAsync          = 1 << 15

	// FeaturesNonCoop are the events that tell a monitor about memory
	// the process forks, moves or drops (CRIU's "uffd-noncoop").
	FeaturesNonCoop = FeatureEventFork | FeatureEventRemap | FeatureEventRemove | FeatureEventUnmap
)

// Registration modes (UFFDIO_REGISTER_MODE_*).
const (
	ModeMissing = 1 << 0 // faults on missing pages go to the monitor
	ModeWP      = 1 << 1 // writes to protected pages do (or, WP_ASYNC, only unprotect them)
)

// Events of a uffd_msg (UFFD_EVENT_*), its first byte.
const (
	EventPagefault = 0x12
	EventFork      = 0x13
	EventRemap     = 0x14
	EventRemove    = 0x15
	EventUnmap     = 0x16
)

// MsgSize is the size of a struct uffd_msg, what a read returns each.
const MsgSize = 32

// APIArg is struct uffdio_api.
type APIArg struct{ API, Features, Ioctls uint64 }

// Open makes a userfaultfd in amber with flags (O_CLOEXEC, O_NONBLOCK):
// through the syscall, then with UFFD_USER_MODE_ONLY (allowed to the
// unprivileged where the syscall is restricted), then through
// /dev/userfaultfd.
func Open(flags int) (int, error) {
	var errs []error
	for _, f := range []uintptr{uintptr(flags), uintptr(flags) | UserModeOnly} {
		fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, f, 0, 0)
		if errno == 0 {
			return int(fd), nil
		}
		errs = append(errs, fmt.Errorf("userfaultfd(%#x): %w", f, errno))
	}
	fd, err := openDevice(uintptr(flags))
	if err == nil {
		return fd, nil
	}
	return -1, errors.Join(append(errs, err)...)
}

func openDevice(flags uintptr) (int, error) {
	const path = "/dev/userfaultfd"
	dev, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(dev)
	// The argument is the flags, not a pointer.
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(dev), ioctlDevNew, flags)
	if errno != 0 {
		return -1, fmt.Errorf("%s: USERFAULTFD_IOC_NEW: %w", path, errno)
	}
	return int(fd), nil
}

// API runs the UFFDIO_API handshake on a fresh userfaultfd asking for
// features, and returns what the kernel offers. Asked for none, it
// reports every feature without enabling any; a handshake refused
// leaves the userfaultfd fresh, so that another may ask for less.
func API(fd int, features uint64) (uint64, error) {
	a := APIArg{API: api, Features: features}
	if err := ioctl(fd, ioctlAPI, unsafe.Pointer(&a)); err != nil {
		return 0, fmt.Errorf("userfaultfd: UFFDIO_API with features %#x: %w", features, err)
	}
	return a.Features, nil
}

// Register registers [start, end) of the userfaultfd's memory in mode
// (ModeMissing, ModeWP). The error is the kernel's, unwrapped beyond
// the range, for callers that skip what cannot be registered.
func Register(fd int, start, end, mode uint64) error {
	r := [4]uint64{start, end - start, mode}
	if err := ioctl(fd, ioctlReg, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("userfaultfd: register %#x-%#x: %w", start, end, err)
	}
	return nil
}

// Copy copies size bytes from src into dst of the userfaultfd's memory
// and wakes the threads waiting there (UFFDIO_COPY). It returns how many
// bytes it copied, which may be fewer with an error: EEXIST at a page
// already present, EAGAIN while the memory's layout changes.
func Copy(fd int, dst uint64, src unsafe.Pointer, size uint64) (uint64, error) {
	c := [5]uint64{dst, uint64(uintptr(src)), size, 0, 0}
	err := ioctl(fd, ioctlCopy, unsafe.Pointer(&c))
	return done(c[4]), err
}

// ZeroPage maps the zero page over [addr, addr+size) (UFFDIO_ZEROPAGE),
// as Copy.
func ZeroPage(fd int, addr, size uint64) (uint64, error) {
	z := [4]uint64{addr, size, 0, 0}
	err := ioctl(fd, ioctlZero, unsafe.Pointer(&z))
	return done(z[3]), err
}

// Poison marks [addr, addr+size) as lost (UFFDIO_POISON, Linux 6.6+):
// a later access there gets SIGBUS, as after a memory error, and the
// mark stays once the userfaultfd is closed. Pages present are kept
// (EEXIST, as Copy).
func Poison(fd int, addr, size uint64) (uint64, error) {
	p := [4]uint64{addr, size, 0, 0}
	err := ioctl(fd, ioctlPoison, unsafe.Pointer(&p))
	return done(p[3]), err
}

// Wake wakes the threads waiting on faults in [addr, addr+size)
// (UFFDIO_WAKE).
func Wake(fd int, addr, size uint64) error {
	r := [2]uint64{addr, size}
	err := ioctl(fd, ioctlWake, unsafe.Pointer(&r))
	return err
}

// done reads the count field of a fill ioctl: bytes done, or a negative
// errno when none were.
func done(v uint64) uint64 {
	if int64(v) < 0 {
		return 0
	}
	return v
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return e
	}
}
