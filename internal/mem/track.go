package mem

// Tracking the pages a task writes between two dumps, on kernels from
// 6.7 on, with soft-dirty or without: a userfaultfd of the task's memory
// in asynchronous write-protect mode (UFFD_FEATURE_WP_ASYNC). The kernel
// resolves a write to a protected page itself, without a fault the task
// could see, and only clears the page's protection; PAGEMAP_SCAN then
// reports the pages without protection as written (PAGE_IS_WRITTEN) and
// protects them again in the same walk (PM_SCAN_WP_MATCHING), so that
// nothing written between the read and the re-arming is lost. Older
// kernels track by soft-dirty bits (ClearSoftDirty).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/uffd"
)

// TrackFeatures are the userfaultfd features tracking needs: asynchronous
// write protection, and protection of pages not populated yet, without
// which PAGEMAP_SCAN does not protect anonymous memory at all. Protecting
// private mappings of shmem files takes the third, where the kernel has it.
const TrackFeatures = uffd.FeatureWPAsync | uffd.FeatureWPUnpopulated

// PAGEMAP_SCAN flags and the written category (linux/fs.h).
const (
	pmScanWPMatching   = 1 << 0
	pmScanCheckWPAsync = 1 << 1
	pageIsWritten      = 1 << 1
)

// InitTracking makes f, a fresh userfaultfd of a task, track writes:
// the UFFDIO_API handshake with TrackFeatures (and write protection of
// shmem and hugetlbfs if the kernel offers it).
func InitTracking(f *os.File) error {
	var err error
	// A handshake refused for a feature the kernel lacks leaves the
	// userfaultfd fresh: the next one may ask for less.
	for _, features := range []uint64{TrackFeatures | uffd.FeatureWPHugetlbfsShmem, TrackFeatures} {
		if _, err = uffd.API(int(f.Fd()), features); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: %w (Linux 6.7 or later with CONFIG_PTE_MARKER_UFFD_WP)", ErrNoWPAsync, err)
}

// ErrNoWPAsync says the kernel has no asynchronous userfaultfd write
// protection to track written pages with; soft-dirty bits may do
// instead (ClearSoftDirty).
var ErrNoWPAsync = errors.New("no asynchronous userfaultfd write protection to track written pages with")

// Tracking by soft-dirty bits, as CRIU does, on kernels that have them
// (CONFIG_MEM_SOFT_DIRTY) but not asynchronous write protection (before
// 6.7): writing 4 to /proc/PID/clear_refs clears the bit of every page
// of the task and write-protects them; the kernel sets it again on the
// first write to a page, resolving the protection fault itself, and on
// every page of a VMA made since. A dump reads the bits with the pages
// (PAGE_IS_SOFT_DIRTY, pagemap bit 55) and clears them again before the
// task runs. Unlike a userfaultfd, the bits belong to no one: anything
// else that clears them (another tool's pre-dump) hides writes from
// amber's next dump, as it would from CRIU's.

// TrackedBySoftDirty are the ranges of vmas whose writes soft-dirty bits
// tell a dump: those whose pages it saves, but hugetlb memory, whose
// bits clear_refs leaves set.
func TrackedBySoftDirty(vmas []*vma.VmaEntry) []Run {
	var tracked []Run
	for _, v := range vmas {
		if HasContents(v.GetStatus()) && v.GetFlags()&unix.MAP_HUGETLB == 0 {
			tracked = appendRun(tracked, Run{v.GetStart(), v.GetEnd()})
		}
	}
	return tracked
}

// ClearSoftDirty clears the soft-dirty bits of every page of pid.
func ClearSoftDirty(pid int) error {
	path := fmt.Sprintf("/proc/%d/clear_refs", pid)
	if err := os.WriteFile(path, []byte("4"), 0); err != nil {
		return fmt.Errorf("clear the soft-dirty bits: %w", err)
	}
	return nil
}

// Register registers every VMA whose pages a dump saves for write
// tracking with f, and returns the ranges it tracks, sorted. A VMA
// the kernel refuses (special mappings, one another userfaultfd of the
// task already watches) is left out: its pages count as written every
// time. So is hugetlb memory, which PAGEMAP_SCAN protects only a whole
// huge page at a time. VMAs registered before stay as they are.
func Register(f *os.File, vmas []*vma.VmaEntry) ([]Run, error) {
	var tracked []Run
	for _, v := range vmas {
		if !HasContents(v.GetStatus()) || v.GetFlags()&unix.MAP_HUGETLB != 0 {
			continue
		}
		err := uffd.Register(int(f.Fd()), v.GetStart(), v.GetEnd(), uffd.ModeWP)
		switch {
		case err == nil:
			tracked = appendRun(tracked, Run{v.GetStart(), v.GetEnd()})
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EPERM), errors.Is(err, unix.EBUSY):
		default:
			return nil, fmt.Errorf("%s: %w", vmaName(v), err)
		}
	}
	return tracked, nil
}

// Page table entries as /proc/PID/pagemap shows them.
const (
	pmSwap      = 1 << 62
	pmFrameMask = 1<<55 - 1
)

// A uffd-wp marker is an entry the kernel leaves where it dropped a
// protected page of a file mapping (a private one's page written and
// then zapped), so that the page stays protected. PAGEMAP_SCAN counts it
// as swapped and not written; it holds no data. ProbeMarker tells how
// /proc/PID/pagemap shows one; scanData finds them in tracked ranges.

// appendMarkers appends the marker pages of r to out.
func (s *Scanner) appendMarkers(out []Run, r Run, marker uint64) ([]Run, error) {
	for at := r.Start; at < r.End; {
		s.pm = growPagemapBuf(s.pm, (r.End-at)/pageSize)
		b := s.pm[:min((r.End-at)/pageSize, pagemapChunk)*8]
		if err := readPagemap(s.f, at, b); err != nil {
			return nil, err
		}
		for i := 0; i < len(b); i += 8 {
			if isMarker(binary.LittleEndian.Uint64(b[i:]), marker) {
				a := at + uint64(i/8)*pageSize
				out = appendRun(out, Run{a, a + pageSize})
			}
		}
		at += uint64(len(b)/8) * pageSize
	}
	return out, nil
}

// isMarker tells a uffd-wp marker's pagemap entry from a swapped page's.
func isMarker(entry, marker uint64) bool {
	return entry&pmSwap != 0 && entry&pmFrameMask == marker
}

// ProbeMarker makes a uffd-wp marker in amber's own memory and returns
// how /proc/PID/pagemap shows it: a swap entry of the kernel's marker
// type, which no swapped page has. It needs CAP_SYS_ADMIN (without it
// the kernel hides swap entries).
func ProbeMarker() (uint64, error) {
	m, err := unix.Mmap(-1, 0, 2*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return 0, fmt.Errorf("probe uffd-wp markers: %w", err)
	}
	defer unix.Munmap(m)
	m[0] = 1 // a page table for the page beside it
	fd, err := uffd.Open(unix.O_CLOEXEC)
	if err != nil {
		return 0, fmt.Errorf("probe uffd-wp markers: %w", err)
	}
	f := os.NewFile(uintptr(fd), "userfaultfd probe")
	defer f.Close()
	if err := InitTracking(f); err != nil {
		return 0, err
	}
	base := uint64(uintptr(unsafe.Pointer(&m[0])))
	if err := uffd.Register(fd, base, base+2*pageSize, uffd.ModeWP); err != nil {
		return 0, fmt.Errorf("probe uffd-wp markers: %w", err)
	}
	s, err := NewScanner(os.Getpid())
	if err != nil {
		return 0, err
	}
	defer s.Close()
	// Asked for every page written, the kernel protects the empty one
	// with a marker.
	if _, err := s.scan(base, base+2*pageSize, scanQuery{flags: pmScanWPMatching, mask: pageIsWritten, ret: pageIsWritten}); err != nil {
		return 0, err
	}
	b := make([]byte, 8)
	if err := readPagemap(s.f, base+pageSize, b); err != nil {
		return 0, err
	}
	e64 := binary.LittleEndian.Uint64(b)
	if e64&pmSwap == 0 || e64&pmFrameMask == 0 {
		return 0, fmt.Errorf("probe uffd-wp markers: pagemap shows %#x for one, not a swap entry (is amber without CAP_SYS_ADMIN?)", e64)
	}
	return e64 & pmFrameMask, nil
}
