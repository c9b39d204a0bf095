package mem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"unsafe"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/proc"
)

// Page categories of the PAGEMAP_SCAN ioctl (linux/fs.h).
const (
	pageIsFile    = 1 << 2
	pageIsPresent = 1 << 3
	pageIsSwapped = 1 << 4
	pageIsPfnZero = 1 << 5
	// pageIsSoftDirty: written since the soft-dirty bits were last
	// cleared, or in a VMA made since (CONFIG_MEM_SOFT_DIRTY).
	pageIsSoftDirty = 1 << 7
	// pageIsGuard marks a guard page (MADV_GUARD_INSTALL). The kernel
	// keeps one as a swap-like page table entry, so it is also
	// pageIsSwapped: it holds no data, and reading it faults. The
	// category came after guard pages themselves (6.13); kernels without
	// it refuse it (EINVAL).
	pageIsGuard = 1 << 8
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

// runsBytes is how many bytes runs cover.
func runsBytes(runs []Run) uint64 {
	var n uint64
	for _, r := range runs {
		n += r.End - r.Start
	}
	return n
}

// scanVecLen is how many regions one PAGEMAP_SCAN returns at most.
const scanVecLen = 4096

// pagemapChunk is how many /proc/PID/pagemap entries one read takes at
// most (64 KiB, 32 MiB of memory): a long run is read a chunk at a time.
const pagemapChunk = 8192

// Scanner finds the pages of a task that hold data of their own.
type Scanner struct {
	f   *os.File
	vec []pageRegion
	pm  []byte // pagemap entries, pagemapChunk of them
	// noGuard is set when the kernel knows no guard category: guard
	// pages, if it has any, then look swapped out.
	noGuard bool
	// noScan is set when the kernel has no PAGEMAP_SCAN: scans read
	// pagemap entries (scanEntries), which tell the zero page by its
	// frame, zeroPFN.
	noScan  bool
	zeroPFN uint64
}

// NewScanner opens /proc/PID/pagemap.
func NewScanner(pid int) (*Scanner, error) {
	return newScanner(pid, scanVecLen)
}

// newScanner opens /proc/PID/pagemap for scans that take at most vecLen
// regions per ioctl (tests use small vectors to make scans partial).
func newScanner(pid, vecLen int) (*Scanner, error) {
	f, err := proc.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return nil, err
	}
	s := &Scanner{f: f, vec: make([]pageRegion, vecLen)}
	// The kernel checks the categories before it walks anything: an
	// empty range tells whether it knows the guard one, or the ioctl.
	_, _, err = s.scanOnce(0, 0, guardQuery())
	s.noGuard = errors.Is(err, unix.EINVAL)
	if errors.Is(err, unix.ENOTTY) {
		if err := s.readEntries(); err != nil {
			f.Close()
			return nil, err
		}
	}
	return s, nil
}

// readEntries makes s read pagemap entries instead of asking
// PAGEMAP_SCAN, which the kernel lacks (or tests pass by).
func (s *Scanner) readEntries() error {
	pfn, err := zeroPagePFN()
	if err != nil {
		return err
	}
	s.noScan, s.zeroPFN = true, pfn
	return nil
}

// Close releases the pagemap file.
func (s *Scanner) Close() error { return s.f.Close() }

// DataRuns returns, VMA by VMA, the runs of pages of vmas (sorted and
// adjacent, each end the next one's start) that are present or swapped
// out and are neither the shared zero page, nor a guard page, nor, in a
// private file mapping, pages of the mapped file (only pages written
// since mapping, now anonymous copies, differ from the file); and the
// guard pages (MADV_GUARD_INSTALL), which hold no data. One scan walks
// the whole range: 10,000 VMAs cost a few ioctls, not 10,000; but a
// long stretch without private file mappings is scanned on its own
// (fileParts).
func (s *Scanner) DataRuns(vmas []*vma.VmaEntry) (data, guards []Run, err error) {
	var out dataScan
	err = s.scanData(vmas, nil, &out)
	return out.data, out.guards, err
}

// dataScan is what scanData found: the data runs and guard pages of
// DataRuns and, in the ranges it tracks, the pages written since they
// were last protected (protected again by the same walk) and the
// uffd-wp markers (see Markers).
type dataScan struct {
	data, guards, written, markers []Run
}

// scanData appends to out what DataRuns finds in vmas (adjacent, sorted).
// With track, the VMAs it tracks (registered with the task's tracking
// userfaultfd) are walked once for all of it: their data, the pages
// written since the last scan, which the walk protects again, and their
// markers; that one walk replaces the three (Written, Markers, DataRuns)
// a dump on top of a pre-dump made, each over the whole memory.
func (s *Scanner) scanData(vmas []*vma.VmaEntry, track *Track, out *dataScan) error {
	var tracked []Run
	if track != nil {
		tracked = mergeRuns(track.Tracked)
	}
	for _, part := range fileParts(vmas) {
		for _, sub := range trackedParts(part.vmas, tracked) {
			q := s.dataQuery(part.file)
			switch {
			case sub.tracked && track.SoftDirty:
				q.ret |= pageIsSoftDirty
			case sub.tracked:
				q = trackQuery(q)
			}
			regions, err := s.scan(sub.vmas[0].GetStart(), sub.vmas[len(sub.vmas)-1].GetEnd(), q)
			if err != nil {
				return err
			}
			switch {
			case sub.tracked && track.SoftDirty:
				out.written = softDirtyRegions(regions, out.written)
			case sub.tracked:
				if err := s.trackedRegions(regions, track.Marker, out); err != nil {
					return err
				}
			}
			i := 0
			for _, v := range sub.vmas {
				for i < len(regions) && regions[i].End <= v.GetStart() {
					i++
				}
				out.data, out.guards = cutRegions(out.data, out.guards, regions[i:], v)
			}
		}
	}
	return nil
}

// Track is the write tracking of a task a dump reads and re-arms: the
// ranges registered with its tracking userfaultfd (Register) and how
// /proc/PID/pagemap shows a uffd-wp marker (ProbeMarker); or, with
// SoftDirty, the ranges whose soft-dirty bits tell the pages written
// (TrackedBySoftDirty), which the caller clears after the scan.
type Track struct {
	Tracked   []Run
	Marker    uint64
	SoftDirty bool
}

// softDirtyRegions appends the pages of regions (a tracked range's scan
// that returns the soft-dirty category) written since the soft-dirty
// bits were last cleared to written.
func softDirtyRegions(regions []pageRegion, written []Run) []Run {
	for _, r := range regions {
		if r.Categories&pageIsSoftDirty != 0 {
			written = appendRun(written, Run{r.Start, r.End})
		}
	}
	return written
}

// trackQuery is q (a dataQuery) for a tracked range: every page present
// or swapped out, with whether it was written, the written ones
// protected again (PM_SCAN_WP_MATCHING protects only the matching pages
// that are written), and an error if the range is not tracked
// (PM_SCAN_CHECK_WPASYNC). The zero page is told by its category rather
// than left out, so that the walk protects it as Written's did.
func trackQuery(q scanQuery) scanQuery {
	q.flags = pmScanWPMatching | pmScanCheckWPAsync
	q.inverted, q.mask = 0, 0
	q.anyof = pageIsPresent | pageIsSwapped
	q.ret |= pageIsWritten | pageIsPfnZero | pageIsSwapped
	return q
}

// trackedRegions appends the written pages of regions (a tracked range's
// trackQuery scan) to out.written, and its markers to out.markers: a
// marker is swapped out and not written (it holds the protection), so
// only such pages' pagemap entries are read.
func (s *Scanner) trackedRegions(regions []pageRegion, marker uint64, out *dataScan) error {
	for _, r := range regions {
		switch {
		case r.Categories&pageIsWritten != 0:
			out.written = appendRun(out.written, Run{r.Start, r.End})
		case r.Categories&pageIsSwapped != 0 && r.Categories&pageIsGuard == 0:
			var err error
			if out.markers, err = s.appendMarkers(out.markers, Run{r.Start, r.End}, marker); err != nil {
				return err
			}
		}
	}
	return nil
}

// trackedPart is a run of adjacent VMAs all tracked, or all not.
type trackedPart struct {
	vmas    []*vma.VmaEntry
	tracked bool
}

// trackedParts cuts adjacent VMAs where they enter or leave the tracked
// ranges (sorted, merged): a VMA is tracked whole or not at all.
func trackedParts(vmas []*vma.VmaEntry, tracked []Run) []trackedPart {
	var out []trackedPart
	for i, v := range vmas {
		in := isTracked(v, tracked)
		if n := len(out); n > 0 && out[n-1].tracked == in {
			out[n-1].vmas = vmas[i-len(out[n-1].vmas) : i+1]
			continue
		}
		out = append(out, trackedPart{vmas[i : i+1], in})
	}
	return out
}

// isTracked says whether v lies inside one of the tracked runs (sorted).
func isTracked(v *vma.VmaEntry, tracked []Run) bool {
	i, _ := slices.BinarySearchFunc(tracked, v.GetStart(), func(r Run, a uint64) int { return cmpU64(r.End, a+1) })
	return i < len(tracked) && tracked[i].Start <= v.GetStart() && v.GetEnd() <= tracked[i].End
}

// scanPart is a range of adjacent VMAs that one scan walks, and whether
// it must tell file pages (it holds a private file mapping).
type scanPart struct {
	vmas []*vma.VmaEntry
	file bool
}

// anonScanMin is the fewest pages of adjacent VMAs without a private
// file mapping that fileParts scans apart from their neighbours.
const anonScanMin = 512

// fileParts cuts adjacent VMAs into the ranges scanned one by one.
// Telling file pages makes the kernel look at the frame of every present
// page (a cache miss each: 40 ms of a 1 GiB scan here, against 3–5 ms
// without), and only private file mappings need it. So stretches of
// anonOnly VMAs of at least anonScanMin pages (2 MiB, a page table) are
// scanned without it, and the rest with their neighbours, which bounds
// the ioctls by the memory, not by the VMAs (10,000 one-page VMAs of
// either kind still take one scan).
func fileParts(vmas []*vma.VmaEntry) []scanPart {
	var parts []scanPart
	flush := func(vs []*vma.VmaEntry, file bool) {
		if len(vs) == 0 {
			return
		}
		if n := len(parts); n > 0 && parts[n-1].file && file {
			parts[n-1].vmas = append(parts[n-1].vmas, vs...)
			return
		}
		parts = append(parts, scanPart{vs, file})
	}
	start, pages, mixed := 0, uint64(0), 0 // the stretch of anonymous VMAs since start
	for i, v := range vmas {
		if v.GetStatus()&StatusFilePrivate == 0 {
			if pages == 0 {
				start = i
			}
			pages += (v.GetEnd() - v.GetStart()) / pageSize
			continue
		}
		if pages >= anonScanMin {
			flush(vmas[mixed:start], true)
			flush(vmas[start:i], false)
			mixed = i
		}
		pages = 0
	}
	if pages >= anonScanMin {
		flush(vmas[mixed:start], true)
		flush(vmas[start:], false)
		return parts
	}
	flush(vmas[mixed:], mixed < len(vmas) && hasFilePrivate(vmas[mixed:]))
	return parts
}

// hasFilePrivate reports whether one of vmas is a private file mapping.
func hasFilePrivate(vmas []*vma.VmaEntry) bool {
	for _, v := range vmas {
		if v.GetStatus()&StatusFilePrivate != 0 {
			return true
		}
	}
	return false
}

// cutRegions appends the parts inside v of regions (sorted, the first
// ending past v's start) to data or guards. Data runs merge within a
// VMA, never across.
func cutRegions(data, guards []Run, regions []pageRegion, v *vma.VmaEntry) ([]Run, []Run) {
	anonOnly := v.GetStatus()&StatusFilePrivate != 0
	var mine []Run
	for _, r := range regions {
		if r.Start >= v.GetEnd() {
			break
		}
		part := Run{max(r.Start, v.GetStart()), min(r.End, v.GetEnd())}
		switch {
		case r.Categories&pageIsGuard != 0:
			guards = appendRun(guards, part)
		case anonOnly && r.Categories&pageIsFile != 0:
		case r.Categories&pageIsPfnZero != 0: // told only by trackQuery scans
		default:
			mine = appendRun(mine, part)
		}
	}
	return append(data, mine...), guards
}

// GuardRuns returns the guard pages of vmas (sorted and adjacent), none
// if the kernel cannot tell them.
func (s *Scanner) GuardRuns(vmas []*vma.VmaEntry) ([]Run, error) {
	if len(vmas) == 0 || s.noGuard {
		return nil, nil
	}
	regions, err := s.scan(vmas[0].GetStart(), vmas[len(vmas)-1].GetEnd(), guardQuery())
	if err != nil {
		return nil, err
	}
	var runs []Run
	for _, r := range regions {
		runs = appendRun(runs, Run{r.Start, r.End})
	}
	return runs, nil
}

// scanQuery is what a scan asks for: the flags and category masks of
// pm_scan_arg.
type scanQuery struct{ flags, inverted, mask, anyof, ret uint64 }

// guardQuery asks for guard pages.
func guardQuery() scanQuery { return scanQuery{mask: pageIsGuard, ret: pageIsGuard} }

// dataQuery asks for pages present or swapped out but not the zero
// page, telling guard pages, and file pages if file.
func (s *Scanner) dataQuery(file bool) scanQuery {
	q := scanQuery{inverted: pageIsPfnZero, mask: pageIsPfnZero, anyof: pageIsPresent | pageIsSwapped,
		ret: pageIsPresent | pageIsSwapped | pageIsFile | pageIsGuard}
	if s.noGuard {
		q.ret &^= pageIsGuard
	}
	if !file {
		q.ret &^= pageIsFile
	}
	return q
}

// scan returns the regions of [start, end) that q asks for, with their
// categories: sorted, disjoint, inside the range.
//
// One ioctl returns at most len(s.vec) regions; a longer walk takes
// several, each resuming where the last one's walk is known to have got
// to. That is not always walk_end: the kernel gathers the regions in
// chunks of its own (512 on x86-64), each from a walk of its own, sets
// walk_end only when a chunk's walk stops early, and leaves it as it
// was when a later chunk's walk reaches the end. So a walk that went to
// the end may report where an earlier chunk stopped, before regions it
// returned; resuming there would return them twice. Everything below the
// last region's end has been walked too: the next scan starts at
// whichever is later.
func (s *Scanner) scan(start, end uint64, q scanQuery) ([]pageRegion, error) {
	if s.noScan {
		return s.scanEntries(start, end, q)
	}
	var out []pageRegion
	for at := start; at < end; {
		regions, walkEnd, err := s.scanOnce(at, end, q)
		if err != nil {
			return nil, err
		}
		if err := s.checkRegions(regions, out, at, end); err != nil {
			return nil, err
		}
		out = append(out, regions...)
		next := walkEnd
		if n := len(regions); n > 0 {
			next = max(next, regions[n-1].End)
		}
		if next <= at {
			return nil, fmt.Errorf("%s: PAGEMAP_SCAN %#x-%#x: the walk made no progress (walk_end %#x, %d regions)", s.f.Name(), at, end, walkEnd, len(regions))
		}
		at = next
	}
	return out, nil
}

// scanOnce runs one PAGEMAP_SCAN of q over [start, end) and returns the
// regions it found (in s.vec) and its walk_end.
func (s *Scanner) scanOnce(start, end uint64, q scanQuery) ([]pageRegion, uint64, error) {
	arg := pmScanArg{
		Size:              uint64(unsafe.Sizeof(pmScanArg{})),
		Flags:             q.flags,
		Start:             start,
		End:               end,
		Vec:               uint64(uintptr(unsafe.Pointer(&s.vec[0]))),
		VecLen:            uint64(len(s.vec)),
		CategoryInverted:  q.inverted,
		CategoryMask:      q.mask,
		CategoryAnyofMask: q.anyof,
		ReturnMask:        q.ret,
	}
	n, _, e := unix.Syscall(unix.SYS_IOCTL, s.f.Fd(), pagemapScan, uintptr(unsafe.Pointer(&arg)))
	if e != 0 {
		return nil, 0, fmt.Errorf("%s: PAGEMAP_SCAN %#x-%#x: %w", s.f.Name(), start, end, e)
	}
	if n > uintptr(len(s.vec)) {
		return nil, 0, fmt.Errorf("%s: PAGEMAP_SCAN %#x-%#x: %d regions returned, vector holds %d", s.f.Name(), start, end, n, len(s.vec))
	}
	return s.vec[:n], arg.WalkEnd, nil
}

// checkRegions checks that regions, returned by a scan of [at, end) after
// the regions before, are page aligned, non-empty, in order, inside the
// range and past every region before: DataRuns cuts them at VMA bounds
// assuming so.
func (s *Scanner) checkRegions(regions, before []pageRegion, at, end uint64) error {
	prev := at
	if n := len(before); n > 0 {
		prev = max(prev, before[n-1].End)
	}
	for _, r := range regions {
		if r.Start < prev || r.End <= r.Start || r.End > end || (r.Start|r.End)%pageSize != 0 {
			return fmt.Errorf("%s: PAGEMAP_SCAN %#x-%#x: region %#x-%#x out of order or range (previous end %#x)", s.f.Name(), at, end, r.Start, r.End, prev)
		}
		prev = r.End
	}
	return nil
}

// pmExclusive is bit 56 of /proc/PID/pagemap: the page is mapped by
// this process alone.
const pmExclusive = 1 << 56

// Shared returns the pages of runs that other processes map too (shared
// copy-on-write since a fork), or that are not mapped at all (swapped),
// reading their pagemap entries; but for the pages in alone (sorted,
// MappedAlone), which smaps found none of.
func (s *Scanner) Shared(runs, alone []Run) ([]Run, error) {
	var out []Run
	for _, r := range subtractRuns(runs, alone) {
		var err error
		if out, err = s.appendShared(out, r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// MappedAlone returns the VMAs of a task's smaps, as sorted runs, that
// map no page another process maps too and have none swapped out: smaps
// counts both (Shared_Clean, Shared_Dirty, Swap) as it walks each VMA,
// which the dump does anyway, so Shared need not read their pagemap
// entries again (50 ms for 1 GiB here). Both count by the page's
// mapcount, as pagemap's exclusive bit does. Once the task is frozen,
// its pages only become less shared (another process writes or unmaps
// its copy); a page swapped out since is read pinned, which swaps it in.
// maps (without the smaps fields) gives none.
func MappedAlone(vmas []proc.VMA) []Run {
	var out []Run
	for _, v := range vmas {
		if v.VmFlags != nil && v.SharedRss == 0 && v.Swap == 0 {
			out = appendRun(out, Run{v.Start, v.End})
		}
	}
	return out
}

// appendShared appends the shared pages of r to out, reading their
// pagemap entries a chunk at a time: a long run costs no more memory.
func (s *Scanner) appendShared(out []Run, r Run) ([]Run, error) {
	for at := r.Start; at+pageSize <= r.End; {
		s.pm = growPagemapBuf(s.pm, (r.End-at)/pageSize)
		b := s.pm[:min((r.End-at)/pageSize, pagemapChunk)*8]
		if err := readPagemap(s.f, at, b); err != nil {
			return nil, err
		}
		for i := 0; i < len(b); i += 8 {
			if binary.LittleEndian.Uint64(b[i:])&pmExclusive == 0 {
				a := at + uint64(i/8)*pageSize
				out = appendRun(out, Run{a, a + pageSize})
			}
		}
		at += uint64(len(b)/8) * pageSize
	}
	return out, nil
}

// growPagemapBuf returns buf, or a larger one, with room for the entries
// of pages pages, pagemapChunk at most: buffers grow with the runs they
// read, as most runs of most processes are short and fresh memory costs
// page faults.
func growPagemapBuf(buf []byte, pages uint64) []byte {
	n := int(min(pages, pagemapChunk)) * 8
	if len(buf) >= n {
		return buf
	}
	return make([]byte, max(n, 2*len(buf)))
}

// readPagemap reads the /proc/PID/pagemap entries of the len(b)/8 pages
// from addr into b.
func readPagemap(f *os.File, addr uint64, b []byte) error {
	if _, err := f.ReadAt(b, int64(addr/pageSize*8)); err != nil {
		return fmt.Errorf("%s at %#x: %w", f.Name(), addr, err)
	}
	return nil
}

// appendRun merges r into the last run when they touch.
func appendRun(runs []Run, r Run) []Run {
	if n := len(runs); n > 0 && runs[n-1].End == r.Start {
		runs[n-1].End = r.End
		return runs
	}
	return append(runs, r)
}
