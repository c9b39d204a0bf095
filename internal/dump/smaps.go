package dump

// The VMAs of a frozen process, read while amber dumps the rest of it:
// smaps gives the fields a dump needs (VmFlags, the shared and swapped
// pages) but walks every page table to count them, the longest step of
// a frozen process with large memory (10-20 ms for 1 GiB here). It is
// read on another CPU from the moment the parasite is in (not before:
// the parasite's mmap would wait for the walk, which holds the mmap
// lock) until the VMAs are needed, and checked against maps, read
// before the parasite: its scratch area is amber's and is cut out, even
// where the kernel merged it with a neighbour.

import (
	"fmt"

	"amber/internal/compel"
	"amber/internal/proc"
)

// smapsRead is a read of /proc/PID/smaps under way.
type smapsRead struct {
	pid     int
	maps    []proc.VMA
	scratch proc.VMA
	done    chan smapsResult
	res     *smapsResult // once waited for
}

type smapsResult struct {
	vmas []proc.VMA
	err  error
}

// readSmapsAsync starts reading the smaps of pid, infected by par, whose
// maps before the parasite were maps.
func readSmapsAsync(pid int, maps []proc.VMA, par *compel.Parasite) *smapsRead {
	start, end := par.Scratch()
	s := &smapsRead{pid: pid, maps: maps, scratch: proc.VMA{Start: start, End: end}, done: make(chan smapsResult, 1)}
	go func() {
		vmas, err := proc.ReadSmaps(pid)
		s.done <- smapsResult{vmas, err}
	}()
	return s
}

// vmas returns the VMAs of the process as smaps shows them, without the
// parasite's scratch area, once they have the layout of maps.
func (s *smapsRead) vmas() ([]proc.VMA, error) {
	if s.res == nil {
		r := <-s.done
		if r.err == nil {
			if r.vmas = cutVMA(r.vmas, s.scratch); !sameLayout(r.vmas, s.maps) {
				r.vmas, r.err = nil, fmt.Errorf("pid %d: its mappings changed while it was frozen (%d VMAs in smaps, %d in maps before the parasite)", s.pid, len(r.vmas), len(s.maps))
			}
		}
		s.res = &r
	}
	return s.res.vmas, s.res.err
}

// cutVMA returns vmas without the range of cut: a VMA inside it is
// dropped, one across its bounds keeps the parts outside, with its
// fields (its flags are those of the VMA it merged with; its page
// counts include cut's, which map pages of amber's alone).
func cutVMA(vmas []proc.VMA, cut proc.VMA) []proc.VMA {
	if cut.End <= cut.Start {
		return vmas
	}
	out := make([]proc.VMA, 0, len(vmas))
	for _, v := range vmas {
		if v.End <= cut.Start || v.Start >= cut.End {
			out = append(out, v)
			continue
		}
		if v.Start < cut.Start {
			left := v
			left.End = cut.Start
			out = append(out, left)
		}
		if v.End > cut.End {
			right := v
			if right.Path == "" && right.Inode == 0 {
				right.Start = cut.End
			} else {
				right.Offset += cut.End - right.Start
				right.Start = cut.End
			}
			out = append(out, right)
		}
	}
	return out
}

// sameLayout says whether a and b list the same mappings: bounds,
// protection, sharing, file and offset.
func sameLayout(a, b []proc.VMA) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Start != y.Start || x.End != y.End || x.Prot != y.Prot || x.Shared != y.Shared || x.Offset != y.Offset ||
			x.Major != y.Major || x.Minor != y.Minor || x.Inode != y.Inode || x.Path != y.Path || x.Deleted != y.Deleted {
			return false
		}
	}
	return true
}
