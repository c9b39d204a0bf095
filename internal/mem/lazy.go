package mem

// Lazy restore: which pages the restore leaves for the lazy-pages daemon
// to bring in through userfaultfd (package lazy), and which it fills as
// usual; and, for a lazy restore from another machine, the dump that
// leaves those pages out of its images and serves them from the frozen
// task (LazySource).

import (
	"fmt"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/image"
)

// LazyPages is what a lazy restore leaves out of a task's fill: set
// RestoreInput.Lazy to one with Eager filled in, PlanRestore fills the
// rest.
type LazyPages struct {
	// Eager are addresses whose page is filled all the same: pages the
	// kernel writes into during the restore (a thread's rseq area), which
	// would be present, half written, before the daemon could fill them.
	Eager []uint64
	// Areas are the VMAs to register with the task's userfaultfd,
	// adjacent ones merged, sorted.
	Areas []Run
	// Ranges are the pages the daemon must bring in, sorted.
	Ranges []LazyRange
	// Images are the pages images the ranges read, by LazyRange.Image.
	Images []image.TaskFile
}

// LazyRange is a run of pages left to the daemon: at Off in pages image
// Image (LazyPages.Images), or, with Image -1, at the source's page
// server only (a PE_LAZY entry of a dump --lazy-pages).
type LazyRange struct {
	Start, End uint64
	Image      int
	Off        uint64
}

// remoteSrc is segment.src of pages only the source's page server has.
const remoteSrc = -1

// CanBeLazy reports whether the pages of a dumped VMA may come in
// lazily: private anonymous memory, as CRIU's lazy restore does, but for
// what is locked (mlock populates it at once), hugetlb memory, which
// userfaultfd fills by huge pages that the images need not hold whole,
// and MAP_DROPPABLE memory, which userfaultfd refuses to register
// (EINVAL) and whose pages no dump saves anyway (savedAtDump).
func CanBeLazy(v *vma.VmaEntry) bool {
	if v.GetStatus()&StatusAnonPrivate == 0 || v.GetStatus()&(StatusVdso|StatusVvar|StatusVsyscall|StatusAnonShared) != 0 {
		return false
	}
	return v.GetFlags()&(unix.MAP_LOCKED|unix.MAP_HUGETLB|unix.MAP_SHARED|unix.MAP_DROPPABLE) == 0
}

// lazyVMAs marks the VMAs whose pages a lazy restore leaves out (none
// when the restore is not lazy).
func lazyVMAs(in *RestoreInput) []bool {
	vmas := in.MM.GetVmas()
	out := make([]bool, len(vmas))
	if in.Lazy == nil {
		return out
	}
	for i, v := range vmas {
		out[i] = CanBeLazy(v)
	}
	return out
}

// splitLazy moves out of segs, into in.Lazy, the parts in lazy VMAs but
// for the eager pages, and returns what is left to fill. A segment of
// pages that only the page server has (remoteSrc) must lie in lazy VMAs
// entirely.
func splitLazy(in *RestoreInput, segs []segment) ([]segment, error) {
	if in.Lazy == nil {
		return segs, nil
	}
	l := in.Lazy
	vmas := in.MM.GetVmas()
	lazy := lazyVMAs(in)
	var eager []Run
	for _, a := range l.Eager {
		p := a &^ (pageSize - 1)
		eager = append(eager, Run{p, p + pageSize})
	}
	sortRuns(eager)
	l.Images = append([]image.TaskFile{in.Pages}, parentPages(in.Parents)...)
	var fill []segment
	for _, sg := range segs {
		for at := sg.addr; at < sg.addr+sg.size; {
			i := findVMA(vmas, at)
			end := sg.addr + sg.size
			if i < len(vmas) && vmas[i].GetStart() <= at {
				end = min(end, vmas[i].GetEnd())
			}
			part := segment{at, end - at, sg.off + at - sg.addr, sg.src}
			switch {
			case i < len(vmas) && vmas[i].GetStart() <= at && lazy[i]:
				fill = append(fill, l.take(part, eager)...)
			case sg.src == remoteSrc:
				return nil, fmt.Errorf("%s: pages at %#x are lazy (PE_LAZY, not in the images) outside private anonymous memory", in.Pages.Path, at)
			default:
				fill = append(fill, part)
			}
			at = end
		}
	}
	for i, v := range vmas {
		if !lazy[i] {
			continue
		}
		if n := len(l.Areas); n > 0 && l.Areas[n-1].End == v.GetStart() {
			l.Areas[n-1].End = v.GetEnd()
		} else {
			l.Areas = append(l.Areas, Run{v.GetStart(), v.GetEnd()})
		}
	}
	return fill, nil
}

// take records sg as lazy, but for its eager pages, which it returns to
// be filled.
func (l *LazyPages) take(sg segment, eager []Run) []segment {
	r := Run{sg.addr, sg.addr + sg.size}
	if sg.src == remoteSrc {
		// The daemon fetches it, eager pages too: nothing in the images.
		l.Ranges = append(l.Ranges, LazyRange{r.Start, r.End, -1, 0})
		return nil
	}
	if !touchesRuns(r, eager) {
		l.Ranges = append(l.Ranges, LazyRange{r.Start, r.End, sg.src, sg.off})
		return nil
	}
	var fill []segment
	for _, e := range eager {
		if e.End <= r.Start || e.Start >= r.End {
			continue
		}
		p := Run{max(e.Start, r.Start), min(e.End, r.End)}
		fill = append(fill, segment{p.Start, p.End - p.Start, sg.off + p.Start - r.Start, sg.src})
	}
	for _, p := range subtract(r, eager) {
		l.Ranges = append(l.Ranges, LazyRange{p.Start, p.End, sg.src, sg.off + p.Start - r.Start})
	}
	return fill
}

func sortRuns(rs []Run) {
	slices.SortFunc(rs, func(a, b Run) int { return cmpU64(a.Start, b.Start) })
}

// LazySource serves the pages a dump --lazy-pages left out of a task's
// images (PE_LAZY entries) from the task itself, frozen until the
// destination has them all.
type LazySource struct {
	task   *compel.Task
	runs   []Run // the lazy pages, sorted
	shared []Run // those other processes map too
}

// Bytes is how much the task left lazy.
func (s *LazySource) Bytes() uint64 {
	return runsBytes(s.runs)
}

// ReadPages reads pages from vaddr on into buf, up to the end of the
// lazy run holding vaddr, and returns how many bytes it read. vaddr
// outside the lazy pages is an error.
func (s *LazySource) ReadPages(vaddr uint64, buf []byte) (int, error) {
	i, _ := slices.BinarySearchFunc(s.runs, vaddr, func(r Run, a uint64) int { return cmpU64(r.End, a+1) })
	if i >= len(s.runs) || s.runs[i].Start > vaddr || vaddr%pageSize != 0 || len(buf) < pageSize {
		return 0, fmt.Errorf("%#x: not a page the dump left lazy", vaddr)
	}
	r := Run{vaddr, min(s.runs[i].End, vaddr+uint64(len(buf))&^(pageSize-1))}
	n := int(r.End - r.Start)
	if err := readRuns(s.task, []Run{r}, s.shared, buf[:n]); err != nil {
		return 0, err
	}
	return n, nil
}

// splitLazyRuns splits the runs a dump copies (sorted) into those it
// still copies and those it leaves lazy: the parts in VMAs whose pages
// a lazy restore brings in later (CanBeLazy).
func splitLazyRuns(runs []Run, vmas []*vma.VmaEntry) (copied, lazy []Run) {
	var areas []Run
	for _, v := range vmas {
		if CanBeLazy(v) {
			areas = appendRun(areas, Run{v.GetStart(), v.GetEnd()})
		}
	}
	return subtractRuns(runs, areas), intersectRuns(runs, areas)
}

// lazyEntries are the PE_LAZY pagemap entries of lazy runs: pages at the
// source only, as CRIU's dump --lazy-pages writes them.
func lazyEntries(runs []Run) []*pagemap.PagemapEntry {
	out := make([]*pagemap.PagemapEntry, 0, len(runs))
	for _, r := range runs {
		out = append(out, pagemapEntry(r, PELazy))
	}
	return out
}
