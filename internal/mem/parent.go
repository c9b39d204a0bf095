package mem

// Incremental dumps: which pages a dump leaves to the images of an
// earlier dump (its parent, CRIU's "parent" link) and which it copies.

import (
	"fmt"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"

	"amber/internal/image"
)

// Incremental says which pages of a process a dump may leave to its
// parent images. A page is left there only if the parent images hold it
// and it is known unwritten since they were made: inside Tracked (where
// writes are recorded) and outside Written. Every other page is copied.
// The dump's own scan of the memory reads and re-arms the tracking: it
// sets Written and Markers.
type Incremental struct {
	// InParent are the pages the parent images hold for the process,
	// sorted (ParentRuns); none where the tracking does not count from
	// them.
	InParent []Run
	// Tracked are the ranges registered for tracking, sorted: the dump's
	// scan reads and re-arms them, and outside them every page counts as
	// written.
	Tracked []Run
	// Marker is how /proc/PID/pagemap shows a uffd-wp marker
	// (ProbeMarker).
	Marker uint64
	// SoftDirty: writes are tracked by the kernel's soft-dirty bits, not
	// by a userfaultfd (see ClearSoftDirty).
	SoftDirty bool
	// Written are the pages written since the parent dump, sorted.
	Written []Run
	// Markers are pages that look swapped out but hold nothing: never
	// dumped.
	Markers []Run
}

// splitParent splits the data runs of a dump (sorted) into the pages it
// copies and those it leaves to the parent images, both sorted.
func (inc *Incremental) splitParent(data []Run) (copied, parent []Run) {
	if inc == nil {
		return data, nil
	}
	data = subtractRuns(data, inc.Markers)
	parent = intersectRuns(subtractRuns(intersectRuns(data, inc.Tracked), inc.Written), inc.InParent)
	return subtractRuns(data, parent), parent
}

// ParentRuns lists the pages a pagemap holds, in its pages image or in
// its own parent's, as sorted runs: what a dump on top of it may leave to
// it.
func ParentRuns(pm []*pagemap.PagemapEntry) []Run {
	var out []Run
	for _, e := range pm {
		if e.GetFlags()&(PEPresent|PEParent) != 0 || e.GetInParent() {
			out = appendRun(out, Run{e.GetVaddr(), e.GetVaddr() + NrPages(e)*pageSize})
		}
	}
	return out
}

// intersectRuns returns the pages both a and b (each sorted, without
// overlaps) hold, as sorted runs.
func intersectRuns(a, b []Run) []Run {
	var out []Run
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo, hi := max(a[i].Start, b[j].Start), min(a[i].End, b[j].End)
		if lo < hi {
			out = appendRun(out, Run{lo, hi})
		}
		if a[i].End < b[j].End {
			i++
		} else {
			j++
		}
	}
	return out
}

// subtractRuns returns the pages of a that b does not hold (both sorted,
// without overlaps), as sorted runs.
func subtractRuns(a, b []Run) []Run {
	var out []Run
	for _, r := range a {
		for _, part := range subtract(r, b) {
			out = appendRun(out, part)
		}
	}
	return out
}

// pagemapEntries are the entries of a pagemap image for copied pages
// (PE_PRESENT, their contents in the pages image in this order) and for
// pages left to the parent images (PE_PARENT), sorted by address.
func pagemapEntries(copied, parent []Run) []*pagemap.PagemapEntry {
	out := make([]*pagemap.PagemapEntry, 0, len(copied)+len(parent))
	for _, r := range copied {
		out = append(out, pagemapEntry(r, PEPresent))
	}
	for _, r := range parent {
		out = append(out, pagemapEntry(r, PEParent))
	}
	slices.SortFunc(out, func(a, b *pagemap.PagemapEntry) int { return cmpU64(a.GetVaddr(), b.GetVaddr()) })
	return out
}

// PagesLayer is the pagemap of a task in one parent images directory of
// an incremental dump, and how the task opens the pages image there.
type PagesLayer struct {
	Pagemap []*pagemap.PagemapEntry
	Pages   image.TaskFile
}

// chain finds the pages of PE_PARENT entries in the parent layers.
type chain struct {
	layers []layerIndex
}

// layerIndex is one layer's pagemap as sorted runs: those whose pages
// its image holds, at their offsets, and those left to its own parent;
// and where the last lookup in each list ended (resolve).
type layerIndex struct {
	present                 []placed
	parent                  []Run
	nextPresent, nextParent int
}

// placed is a run of pages and its offset in a pages image.
type placed struct {
	Run
	off uint64
}

func newChain(layers []PagesLayer) *chain {
	c := &chain{layers: make([]layerIndex, len(layers))}
	for i, l := range layers {
		var off uint64
		for _, e := range l.Pagemap {
			r := Run{e.GetVaddr(), e.GetVaddr() + NrPages(e)*pageSize}
			switch {
			case e.GetFlags()&PEPresent != 0:
				c.layers[i].present = append(c.layers[i].present, placed{r, off})
				off += r.End - r.Start
			case e.GetFlags()&PEParent != 0 || e.GetInParent():
				c.layers[i].parent = append(c.layers[i].parent, r)
			}
		}
		slices.SortFunc(c.layers[i].present, func(a, b placed) int { return cmpU64(a.Start, b.Start) })
		sortRuns(c.layers[i].parent)
	}
	return c
}

// resolve appends to out where the pages of r are in the layers from
// depth on: in a layer's pages image, or in its parents' for its
// PE_PARENT entries. Pages no layer holds are an error.
//
// A chain of pre-dumps of a process writing at random resolves into
// tens of thousands of segments, and the planning of its restore is
// part of a migration's downtime. So resolve appends in place rather
// than building a list per level, and each level's lookups go on from
// where the one before ended: a pagemap's entries come in address
// order, so the lookups of a level do too, and the walk of the whole
// chain is one pass over each layer (a lookup behind the last starts a
// binary search again).
func (c *chain) resolve(out []segment, r Run, depth int) ([]segment, error) {
	if depth >= len(c.layers) {
		return out, fmt.Errorf("pages %#x-%#x are in the parent images, but there are only %d levels of them", r.Start, r.End, depth)
	}
	l := &c.layers[depth]
	for at := r.Start; at < r.End; {
		if p, ok := l.findPresent(at); ok {
			end := min(r.End, p.End)
			out = append(out, segment{at, end - at, p.off + at - p.Start, depth + 1})
			at = end
			continue
		}
		p, ok := l.findParent(at)
		if !ok {
			return out, fmt.Errorf("page %#x is in the parent images, but level %d of them lacks it", at, depth+1)
		}
		end := min(r.End, p.End)
		var err error
		if out, err = c.resolve(out, Run{at, end}, depth+1); err != nil {
			return out, err
		}
		at = end
	}
	return out, nil
}

// findPresent returns the run of l.present that holds addr.
func (l *layerIndex) findPresent(addr uint64) (placed, bool) {
	i, ok := findFrom(l.present, l.nextPresent, addr, func(p placed) Run { return p.Run })
	l.nextPresent = i
	if !ok {
		return placed{}, false
	}
	return l.present[i], true
}

// findParent returns the run of l.parent that holds addr.
func (l *layerIndex) findParent(addr uint64) (Run, bool) {
	i, ok := findFrom(l.parent, l.nextParent, addr, func(r Run) Run { return r })
	l.nextParent = i
	if !ok {
		return Run{}, false
	}
	return l.parent[i], true
}

// findFrom returns the index of the first element of rs (sorted, each
// with the pages run gives) that ends above addr, and whether it holds
// addr. The search goes on from next, where the last one ended, unless
// addr lies behind it.
func findFrom[T any](rs []T, next int, addr uint64, run func(T) Run) (int, bool) {
	i := next
	if i > 0 && i <= len(rs) && run(rs[i-1]).End > addr {
		i, _ = slices.BinarySearchFunc(rs, addr, func(r T, a uint64) int { return cmpU64(run(r).End, a+1) })
	}
	for i < len(rs) && run(rs[i]).End <= addr {
		i++
	}
	return i, i < len(rs) && run(rs[i]).Start <= addr
}
