// Package lazy is amber's lazy restore (CRIU's restore --lazy-pages and
// lazy-pages daemon). The restore leaves the pages of private anonymous
// memory out of its fill (mem.LazyPages); at the end of each process's
// restore, a userfaultfd is created inside the process, so that it
// belongs to the process's memory, registered over those VMAs, and handed
// with the list of missing pages over a unix socket in the images
// directory to the daemon (Client). The process runs at once; the daemon
// (Serve) answers its page faults with UFFDIO_COPY from the pages images,
// copies the rest in the background, follows fork, mremap, munmap and
// MADV_DONTNEED through userfaultfd events, and ends once every page is in
// and every process it served has its userfaultfd closed.
package lazy

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// userfaultfd ioctls and structures (linux/userfaultfd.h).
const (
	uffdAPI            = 0xaa
	uffdioAPI          = 0xc018aa3f // _IOWR(0xaa, 0x3f, struct uffdio_api)
	uffdioRegister     = 0xc020aa00 // _IOWR(0xaa, 0x00, struct uffdio_register)
	uffdioWake         = 0x8010aa02 // _IOR(0xaa, 0x02, struct uffdio_range)
	uffdioCopy         = 0xc028aa03 // _IOWR(0xaa, 0x03, struct uffdio_copy)
	uffdioZeropage     = 0xc020aa04 // _IOWR(0xaa, 0x04, struct uffdio_zeropage)
	uffdRegisterMiss   = 1 << 0
	featureEventFork   = 1 << 1
	featureEventRemap  = 1 << 2
	featureEventRemove = 1 << 3
	featureEventUnmap  = 1 << 6

	eventPagefault = 0x12
	eventFork      = 0x13
	eventRemap     = 0x14
	eventRemove    = 0x15
	eventUnmap     = 0x16

	msgSize  = 32 // struct uffd_msg
	pageSize = 4096
)

// Features are the userfaultfd features a lazy restore asks for: the
// events that tell the daemon about forks and about memory moved or
// dropped, whose pages it must then serve elsewhere or not at all.
const Features = featureEventFork | featureEventRemap | featureEventRemove | featureEventUnmap

// Init makes uffd, a fresh userfaultfd, report missing pages and the
// events of Features (the UFFDIO_API handshake).
func Init(uffd int) error {
	api := [3]uint64{uffdAPI, Features}
	if err := ioctl(uffd, uffdioAPI, unsafe.Pointer(&api)); err != nil {
		return fmt.Errorf("userfaultfd: UFFDIO_API with features %#x: %w", uint64(Features), err)
	}
	return nil
}

// Register registers [start, end) of uffd's memory for missing-page
// faults.
func Register(uffd int, start, end uint64) error {
	reg := [4]uint64{start, end - start, uffdRegisterMiss}
	if err := ioctl(uffd, uffdioRegister, unsafe.Pointer(&reg)); err != nil {
		return fmt.Errorf("userfaultfd: register %#x-%#x: %w", start, end, err)
	}
	return nil
}

// errGone is a copy into a process whose memory is gone (it exited or
// ran execve): nothing is left to serve.
var errGone = errors.New("the process's memory is gone")

// errChanging is a copy refused while the memory's layout changes (a
// fork, mremap, munmap or MADV_DONTNEED whose event is not read yet):
// try again after reading the events.
var errChanging = errors.New("the memory layout is changing")

// copyPages copies size bytes from src into dst of uffd's memory,
// skipping pages already present, and wakes the threads waiting there.
func copyPages(uffd int, dst uint64, src unsafe.Pointer, size uint64) error {
	for done := uint64(0); done < size; {
		c := [5]uint64{dst + done, uint64(uintptr(src)) + done, size - done, 0, 0}
		err := ioctl(uffd, uffdioCopy, unsafe.Pointer(&c))
		n := int64(c[4])
		if n > 0 {
			done += uint64(n)
		}
		switch {
		case err == nil:
			return nil
		case n > 0:
			// Stopped short: at a present page, or by a layout change.
		case errors.Is(err, unix.EEXIST):
			if err := wake(uffd, dst+done, pageSize); err != nil {
				return err
			}
			done += pageSize
		default:
			return copyError(err)
		}
	}
	return nil
}

// zeroPage maps the zero page at addr, a page the images do not hold (or
// no longer: the process dropped it), unless something is there.
func zeroPage(uffd int, addr uint64) error {
	z := [4]uint64{addr, pageSize, 0, 0}
	err := ioctl(uffd, uffdioZeropage, unsafe.Pointer(&z))
	if errors.Is(err, unix.EEXIST) {
		return wake(uffd, addr, pageSize)
	}
	return copyError(err)
}

func wake(uffd int, addr, size uint64) error {
	r := [2]uint64{addr, size}
	return copyError(ioctl(uffd, uffdioWake, unsafe.Pointer(&r)))
}

// copyError maps the errors of a fill to errGone and errChanging.
func copyError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ESRCH):
		return errGone
	case errors.Is(err, unix.EAGAIN):
		return errChanging
	}
	return err
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
