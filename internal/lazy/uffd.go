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
//
// Pages a dump --lazy-pages left at the source (PE_LAZY) come from the
// source's page server instead (Options.Fetch). If it fails, no such
// page can come any more: the daemon poisons every page still missing,
// so that a process touching one gets SIGBUS rather than zeroes, and
// fails (SourceError).
package lazy

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"amber/internal/uffd"
)

const pageSize = 4096

// Features are the userfaultfd features a lazy restore asks for: the
// events that tell the daemon about forks and about memory moved or
// dropped, whose pages it must then serve elsewhere or not at all.
const Features = uffd.FeaturesNonCoop

// Init makes fd, a fresh userfaultfd, report missing pages and the
// events of Features (the UFFDIO_API handshake), and, where the kernel
// has it (Linux 6.6+), lets the daemon poison pages it can no longer
// bring in (UFFD_FEATURE_POISON): a process then gets SIGBUS there
// instead of reading zeroes.
func Init(fd int) error {
	if _, err := uffd.API(fd, Features|uffd.FeaturePoison); err == nil {
		return nil
	}
	_, err := uffd.API(fd, Features)
	return err
}

// Register registers [start, end) of fd's memory for missing-page
// faults.
func Register(fd int, start, end uint64) error {
	return uffd.Register(fd, start, end, uffd.ModeMissing)
}

// errGone is a copy into a process whose memory is gone (it exited or
// ran execve): nothing is left to serve.
var errGone = errors.New("the process's memory is gone")

// errChanging is a copy refused while the memory's layout changes (a
// fork, mremap, munmap or MADV_DONTNEED whose event is not read yet):
// try again after reading the events.
var errChanging = errors.New("the memory layout is changing")

// copyPages copies size bytes from src into dst of fd's memory,
// skipping pages already present and pages in no mapping registered
// with fd, and wakes the threads waiting there. It returns how many
// bytes it copied.
func copyPages(fd int, dst uint64, src unsafe.Pointer, size uint64) (copied uint64, err error) {
	for done := uint64(0); done < size; {
		n, err := inOneMapping(size-done, func(size uint64) (uint64, error) {
			return uffd.Copy(fd, dst+done, unsafe.Add(src, done), size)
		})
		done += n
		copied += n
		switch {
		case err == nil || n > 0:
			// All of what lies in one mapping copied, or stopped short:
			// at a present page, or by a layout change.
		case errors.Is(err, unix.EEXIST):
			if err := wake(fd, dst+done, pageSize); err != nil {
				return copied, err
			}
			done += pageSize
		case errors.Is(err, unix.ENOENT):
			// A page of no registered mapping: unmapped, or mapped anew,
			// since the pieces were known (the event will drop it). A
			// thread that faulted there before is woken to fault again.
			if err := wake(fd, dst+done, pageSize); err != nil {
				return copied, err
			}
			done += pageSize
		default:
			return copied, copyError(err)
		}
	}
	return copied, nil
}

// inOneMapping runs fill, a UFFDIO_COPY or UFFDIO_POISON of size bytes
// from some address on, and again over a half as long while it fails
// with ENOENT: the kernel refuses a range that runs past the end of the
// mapping it starts in, and a run of missing pages can span two
// mappings (adjacent ones the dump saved as one run, or one the process
// split since, mprotecting part of it). It returns what fill copied and
// its error; ENOENT for one page says the page is in no registered
// mapping.
func inOneMapping(size uint64, fill func(size uint64) (uint64, error)) (uint64, error) {
	for {
		n, err := fill(size)
		if !errors.Is(err, unix.ENOENT) || n > 0 || size <= pageSize {
			return n, err
		}
		size = max(pageSize, size/2&^(pageSize-1))
	}
}

// zeroPage maps the zero page at addr, a page the images do not hold (or
// no longer: the process dropped it), unless something is there, and
// wakes the threads waiting there. A page in no registered mapping any
// more (unmapped, moved since the fault) gets nothing: its thread, woken,
// faults again, or not, as the layout now says.
func zeroPage(fd int, addr uint64) error {
	_, err := uffd.ZeroPage(fd, addr, pageSize)
	if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOENT) {
		return wake(fd, addr, pageSize)
	}
	return copyError(err)
}

// poison marks [start, end) of fd's memory as lost: pages that will
// never come in. Pages present stay. Without UFFD_FEATURE_POISON it
// fails with EINVAL.
func poison(fd int, start, end uint64) error {
	for at := start; at < end; {
		n, err := inOneMapping(end-at, func(size uint64) (uint64, error) { return uffd.Poison(fd, at, size) })
		at += n
		switch {
		case err == nil || n > 0:
		case errors.Is(err, unix.EEXIST), errors.Is(err, unix.ENOENT):
			at += pageSize
		default:
			return fmt.Errorf("poison %#x-%#x: %w", at, end, copyError(err))
		}
	}
	return nil
}

func wake(fd int, addr, size uint64) error {
	return copyError(uffd.Wake(fd, addr, size))
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
