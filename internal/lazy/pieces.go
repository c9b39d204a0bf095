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

// remove drops [start, end) and returns what was there.
func (ps pieces) remove(start, end uint64) (left pieces, removed pieces) {
	for _, p := range ps {
		if p.end <= start || p.start >= end {
			left = append(left, p)
			continue
		}
		if p.start < start {
			left = append(left, p.cut(p.start, start))
		}
		removed = append(removed, p.cut(start, end))
		if p.end > end {
			left = append(left, p.cut(end, p.end))
		}
	}
	return left, removed
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
