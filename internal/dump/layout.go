package dump

// The layout of a frozen process comes from two reads. /proc/PID/maps,
// read first, is quick and tells the parasite all it needs (where code
// and the main stack lie). /proc/PID/smaps adds what the images need
// (VmFlags, the shared and swapped bytes) but costs a walk of every page
// table: milliseconds for a GiB of memory, which the frozen process
// would wait for on top of the parasite's round trips. So smaps is read
// meanwhile, while the parasite goes in, and may see the parasite's
// scratch mapping or not: on its own, or merged with a neighbour (the
// kernel merges only mappings of equal flags, so the neighbour's
// VmFlags are the merged mapping's). joinLayout cuts the scratch out and
// checks that what remains is the layout maps showed, mapping by
// mapping: the process is frozen, and nothing else may have changed it.

import (
	"fmt"
	"time"

	"amber/internal/compel"
	"amber/internal/proc"
)

// joinLayout returns the smaps mappings without the parasite's scratch
// [start, end), and an error if they are not the mappings of maps.
func joinLayout(smaps, maps []proc.VMA, start, end uint64) ([]proc.VMA, error) {
	out := withoutArea(smaps, start, end)
	for i := range max(len(out), len(maps)) {
		switch {
		case i >= len(out):
			return nil, fmt.Errorf("the layout changed while frozen: smaps lacks %s of maps", vmaText(maps[i]))
		case i >= len(maps):
			return nil, fmt.Errorf("the layout changed while frozen: maps lacks %s of smaps", vmaText(out[i]))
		case !sameMapping(out[i], maps[i]):
			return nil, fmt.Errorf("the layout changed while frozen: smaps has %s where maps has %s", vmaText(out[i]), vmaText(maps[i]))
		}
	}
	return out, nil
}

// withoutArea cuts [start, end) out of the mappings vmas. A mapping that
// held it on one side or both keeps the rest, with the offset of a file
// mapping moved along.
func withoutArea(vmas []proc.VMA, start, end uint64) []proc.VMA {
	if start >= end {
		return vmas
	}
	out := make([]proc.VMA, 0, len(vmas)+1)
	for _, v := range vmas {
		if v.End <= start || v.Start >= end {
			out = append(out, v)
			continue
		}
		if v.Start < start {
			left := v
			left.End = start
			out = append(out, left)
		}
		if v.End > end {
			right := v
			if v.Inode != 0 {
				right.Offset += end - v.Start
			}
			right.Start = end
			out = append(out, right)
		}
	}
	return out
}

// sameMapping says whether a and b are one mapping as maps shows it.
func sameMapping(a, b proc.VMA) bool {
	return a.Start == b.Start && a.End == b.End && a.Prot == b.Prot && a.Shared == b.Shared && a.Offset == b.Offset &&
		a.Major == b.Major && a.Minor == b.Minor && a.Inode == b.Inode && a.Path == b.Path && a.Deleted == b.Deleted
}

// vmaText names a mapping in an error.
func vmaText(v proc.VMA) string {
	s := fmt.Sprintf("%x-%x", v.Start, v.End)
	if v.Path != "" {
		s += " " + v.Path
	}
	return s
}

// smapsRead is the outcome of a read of smaps, joined with maps.
type smapsRead struct {
	vmas []proc.VMA
	err  error
	took time.Duration
}

// readSmaps reads the smaps of pid, infected by par, in the background
// and joins them with maps, read before the infection.
func readSmaps(pid int, maps []proc.VMA, par *compel.Parasite) <-chan smapsRead {
	out := make(chan smapsRead, 1)
	from, to := par.Area()
	go func() {
		at := time.Now()
		vmas, err := proc.ReadSmaps(pid)
		if err == nil {
			vmas, err = joinLayout(vmas, maps, from, to)
		}
		out <- smapsRead{vmas, err, time.Since(at)}
	}()
	return out
}

// layout waits for the smaps of ps, which the VMA entries need.
func (t *frozenTree) layout(ps *procState) error {
	if ps.smaps == nil {
		return nil
	}
	r := <-ps.smaps
	ps.smaps = nil
	if r.err != nil {
		return fmt.Errorf("pid %d: %w", ps.pid, r.err)
	}
	ps.vmas = r.vmas
	t.log.Debugf("pid %d: smaps read in %v", ps.pid, r.took)
	return nil
}
