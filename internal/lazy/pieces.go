package lazy

import (
	"slices"

	"amber/internal/image"
)

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

// toImagePieceEnd returns the part of p up to the end of the image piece
// (image.PieceSize) its first page lies in: all of p if it has no
// image.
func (p piece) toImagePieceEnd() piece {
	if p.img < 0 {
		return p
	}
	left := image.PieceSize - p.off%image.PieceSize
	return p.cut(p.start, p.start+left)
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

// origEnd is the end of p's pages at the dump.
func (p piece) origEnd() uint64 { return p.orig + p.end - p.start }

// overlaps reports whether p and q hold some of the same pages of the
// dump: from the same source (pages image, or page server) at the same
// dump address, wherever the process has them now.
func (p piece) overlaps(q piece) bool {
	return p.img == q.img && p.orig < q.origEnd() && q.orig < p.origEnd()
}

// firstFree returns the first part of ps, at most size bytes, that holds
// none of the pages of taken: what one background copy may take while
// the others copy taken.
func (ps pieces) firstFree(taken []piece, size uint64) (piece, bool) {
	for _, p := range ps {
		if c, ok := p.firstFree(taken, size); ok {
			return c, true
		}
	}
	return piece{}, false
}

// firstFree is pieces.firstFree within p.
func (p piece) firstFree(taken []piece, size uint64) (piece, bool) {
	for at := p.start; at < p.end; {
		c, skipTo := p.cut(at, at+size), uint64(0)
		for _, b := range taken {
			switch {
			case !c.overlaps(b):
			case b.orig <= c.orig:
				// b holds c's first page: look past b.
				skipTo = c.start + b.origEnd() - c.orig
			default:
				c = c.cut(c.start, c.start+b.orig-c.orig)
			}
			if skipTo != 0 {
				break
			}
		}
		if skipTo == 0 {
			return c, true
		}
		at = skipTo
	}
	return piece{}, false
}

// holding returns the parts of ps that hold pages of p (by source and
// dump address), wherever they are now. Unless moved (some piece of ps
// may no longer be at its dump address: an mremap moved it), those are
// the pieces at p's dump address, found by a binary search: a process
// restored from a chain of pre-dumps misses tens of thousands of
// pieces, and a walk of all of them for every chunk of the background
// copy kept its pages from coming in for seconds.
func (ps pieces) holding(p piece, moved bool) pieces {
	first := 0
	if !moved {
		first, _ = slices.BinarySearchFunc(ps, p.orig, func(m piece, a uint64) int {
			if m.end <= a {
				return -1
			}
			return 1
		})
	}
	var out pieces
	for _, m := range ps[first:] {
		if !moved && m.start >= p.origEnd() {
			break
		}
		if m.overlaps(p) {
			from, to := max(m.orig, p.orig), min(m.origEnd(), p.origEnd())
			out = append(out, m.cut(m.start+from-m.orig, m.start+to-m.orig))
		}
	}
	return out
}
