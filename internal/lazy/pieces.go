package lazy

import "slices"

// piece is a run of missing pages of one process and where their
// contents are: at off in pages image img of the task, or, img -1, at
// the source's page server by the address the pages had at the dump
// (orig).
type piece struct {
	start, end uint64
	img        int
	off        uint64
	orig       uint64
}

// cut returns the part of p in [start, end) (which must overlap it).
func (p piece) cut(start, end uint64) piece {
	s, e := max(p.start, start), min(p.end, end)
	d := s - p.start
	return piece{s, e, p.img, p.off + d, p.orig + d}
}

// pieces are the missing pages of one process, sorted, not overlapping.
type pieces []piece

// find returns the index of the piece holding addr, or -1.
func (ps pieces) find(addr uint64) int {
	i, ok := slices.BinarySearchFunc(ps, addr, func(p piece, a uint64) int {
		switch {
		case p.end <= a:
			return -1
		case p.start > a:
			return 1
		}
		return 0
	})
	if !ok {
		return -1
	}
	return i
}

// remove drops [start, end) and returns what was there. It works in
// place, left sharing ps's array (ps is not to be used again): a
// process restored from a chain of pre-dumps misses thousands of
// pieces, and rebuilding the whole list for every fault and every
// chunk of the background copy made its pages come in seconds late.
// Removing from the front, as the background copy does, moves nothing.
func (ps pieces) remove(start, end uint64) (left pieces, removed pieces) {
	i, _ := slices.BinarySearchFunc(ps, start, func(p piece, a uint64) int {
		if p.end <= a {
			return -1
		}
		return 1
	})
	j := i
	for j < len(ps) && ps[j].start < end {
		removed = append(removed, ps[j].cut(start, end))
		j++
	}
	if i == j {
		return ps, nil
	}
	var keep []piece
	if first := ps[i]; first.start < start {
		keep = append(keep, first.cut(first.start, start))
	}
	if last := ps[j-1]; last.end > end {
		keep = append(keep, last.cut(end, last.end))
	}
	if i == 0 && len(keep) <= j {
		copy(ps[j-len(keep):], keep)
		return ps[j-len(keep):], removed
	}
	return slices.Replace(ps, i, j, keep...), removed
}

// move follows mremap: what was at [from, from+size) is now at to, and
// whatever was at [to, to+size) is gone.
func (ps pieces) move(from, to, size uint64) pieces {
	left, moved := ps.remove(from, from+size)
	left, _ = left.remove(to, to+size)
	for _, p := range moved {
		p.start, p.end = p.start-from+to, p.end-from+to
		left = append(left, p)
	}
	slices.SortFunc(left, func(a, b piece) int {
		switch {
		case a.start < b.start:
			return -1
		case a.start > b.start:
			return 1
		}
		return 0
	})
	return left
}

// bytes is how much is missing.
func (ps pieces) bytes() uint64 {
	var n uint64
	for _, p := range ps {
		n += p.end - p.start
	}
	return n
}
