package mem

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"
)

// Page categories of the PAGEMAP_SCAN ioctl (linux/fs.h).
const (
	pageIsFile    = 1 << 2
	pageIsPresent = 1 << 3
	pageIsSwapped = 1 << 4
	pageIsPfnZero = 1 << 5
)

// pagemapScan is _IOWR('f', 16, struct pm_scan_arg).
const pagemapScan = 0xc0606610

// pmScanArg is struct pm_scan_arg.
type pmScanArg struct {
	Size, Flags, Start, End, WalkEnd, Vec, VecLen, MaxPages       uint64
	CategoryInverted, CategoryMask, CategoryAnyofMask, ReturnMask uint64
}

// pageRegion is struct page_region.
type pageRegion struct{ Start, End, Categories uint64 }

// Run is a range of pages [Start, End) whose contents must be saved.
type Run struct{ Start, End uint64 }

// Scanner finds the pages of a task that hold data of their own.
type Scanner struct {
	f   *os.File
	vec []pageRegion
}

// NewScanner opens /proc/PID/pagemap.
func NewScanner(pid int) (*Scanner, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return nil, err
	}
	return &Scanner{f: f, vec: make([]pageRegion, 4096)}, nil
}

// Close releases the pagemap file.
func (s *Scanner) Close() error { return s.f.Close() }

// DataRuns returns, VMA by VMA, the runs of pages of vmas (sorted and
// adjacent, each end the next one's start) that are present or swapped
// out and are neither the shared zero page nor, in a private file
// mapping, pages of the mapped file (only pages written since mapping,
// now anonymous copies, differ from the file). One scan walks the whole
// range: 10,000 VMAs cost a few ioctls, not 10,000.
func (s *Scanner) DataRuns(vmas []*vma.VmaEntry) ([]Run, error) {
	if len(vmas) == 0 {
		return nil, nil
	}
	regions, err := s.scan(vmas[0].GetStart(), vmas[len(vmas)-1].GetEnd())
	if err != nil {
		return nil, err
	}
	var runs []Run
	i := 0
	for _, v := range vmas {
		anonOnly := v.GetStatus()&StatusFilePrivate != 0
		for i < len(regions) && regions[i].End <= v.GetStart() {
			i++
		}
		var mine []Run // runs merge within a VMA, never across
		for _, r := range regions[i:] {
			if r.Start >= v.GetEnd() {
				break
			}
			if anonOnly && r.Categories&pageIsFile != 0 {
				continue
			}
			mine = appendRun(mine, Run{max(r.Start, v.GetStart()), min(r.End, v.GetEnd())})
		}
		runs = append(runs, mine...)
	}
	return runs, nil
}

// scan returns the regions of [start, end) that hold pages present or
// swapped out, other than the zero page, with their categories (file or
// not, present or swapped).
func (s *Scanner) scan(start, end uint64) ([]pageRegion, error) {
	arg := pmScanArg{
		Size:              uint64(unsafe.Sizeof(pmScanArg{})),
		Start:             start,
		End:               end,
		CategoryInverted:  pageIsPfnZero,
		CategoryMask:      pageIsPfnZero,
		CategoryAnyofMask: pageIsPresent | pageIsSwapped,
		ReturnMask:        pageIsPresent | pageIsSwapped | pageIsFile,
	}
	var out []pageRegion
	for arg.Start < end {
		arg.Vec = uint64(uintptr(unsafe.Pointer(&s.vec[0])))
		arg.VecLen = uint64(len(s.vec))
		n, _, e := unix.Syscall(unix.SYS_IOCTL, s.f.Fd(), pagemapScan, uintptr(unsafe.Pointer(&arg)))
		if e != 0 {
			return nil, fmt.Errorf("%s: PAGEMAP_SCAN %#x-%#x: %w", s.f.Name(), arg.Start, end, e)
		}
		out = append(out, s.vec[:n]...)
		if arg.WalkEnd <= arg.Start {
			break
		}
		arg.Start = arg.WalkEnd
	}
	return out, nil
}

// pmExclusive is bit 56 of /proc/PID/pagemap: the page is mapped by
// this process alone.
const pmExclusive = 1 << 56

// Shared returns the pages of runs that other processes map too (shared
// copy-on-write since a fork), or that are not mapped at all (swapped).
func (s *Scanner) Shared(runs []Run) ([]Run, error) {
	var out []Run
	for _, r := range runs {
		n := (r.End - r.Start) / pageSize
		b := make([]byte, n*8)
		if _, err := s.f.ReadAt(b, int64(r.Start/pageSize*8)); err != nil {
			return nil, fmt.Errorf("%s: %w", s.f.Name(), err)
		}
		for i := uint64(0); i < n; i++ {
			if binary.LittleEndian.Uint64(b[i*8:])&pmExclusive == 0 {
				a := r.Start + i*pageSize
				out = appendRun(out, Run{a, a + pageSize})
			}
		}
	}
	return out, nil
}

// appendRun merges r into the last run when they touch.
func appendRun(runs []Run, r Run) []Run {
	if n := len(runs); n > 0 && runs[n-1].End == r.Start {
		runs[n-1].End = r.End
		return runs
	}
	return append(runs, r)
}
