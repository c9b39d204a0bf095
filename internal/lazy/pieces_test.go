package lazy

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"amber/internal/mem"
)

func TestPiecesRemove(t *testing.T) {
	ps := pieces{{0x1000, 0x5000, 0, 0, 0x1000}, {0x8000, 0x9000, 1, 0x4000, 0x8000}}
	left, removed := ps.remove(0x2000, 0x3000)
	want := pieces{{0x1000, 0x2000, 0, 0, 0x1000}, {0x3000, 0x5000, 0, 0x2000, 0x3000}, {0x8000, 0x9000, 1, 0x4000, 0x8000}}
	if !reflect.DeepEqual(left, want) {
		t.Fatalf("left %x, want %x", left, want)
	}
	if !reflect.DeepEqual(removed, pieces{{0x2000, 0x3000, 0, 0x1000, 0x2000}}) {
		t.Fatalf("removed %x", removed)
	}
	if left.bytes() != 0x4000 {
		t.Fatalf("bytes %#x, want 0x4000", left.bytes())
	}
}

// A moved piece keeps its place in the image and its dump address (what
// the page server knows it by); what was at the destination is gone.
func TestPiecesMove(t *testing.T) {
	ps := pieces{{0x1000, 0x3000, 0, 0, 0x1000}, {0x10000, 0x11000, 0, 0x2000, 0x10000}}
	got := ps.move(0x2000, 0x10000, 0x1000)
	want := pieces{{0x1000, 0x2000, 0, 0, 0x1000}, {0x10000, 0x11000, 0, 0x1000, 0x2000}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
}

func TestPiecesFind(t *testing.T) {
	ps := pieces{{0x1000, 0x3000, 0, 0, 0}, {0x8000, 0x9000, 0, 0, 0}}
	for _, c := range []struct {
		addr uint64
		want int
	}{{0, -1}, {0x1000, 0}, {0x2fff, 0}, {0x3000, -1}, {0x8000, 1}, {0x9000, -1}} {
		if got := ps.find(c.addr); got != c.want {
			t.Errorf("find(%#x) = %d, want %d", c.addr, got, c.want)
		}
	}
}

// Ranges survive the trip over the socket, a page server's (-1) too.
func TestRangesEncoding(t *testing.T) {
	got := decodeRanges(encodeRanges([]mem.LazyRange{{Start: 0x1000, End: 0x3000, Image: 2, Off: 0x5000}, {Start: 0x4000, End: 0x5000, Image: -1}}))
	want := pieces{{0x1000, 0x3000, 2, 0x5000, 0x1000}, {0x4000, 0x5000, -1, 0, 0x4000}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
}

// TestNextChunk claims chunks as prefetch workers do, over random
// missing pieces (some moved: their dump addresses differ from their
// addresses) and random chunk sizes, with up to three reads in flight:
// every chunk is a part of one piece, at most the size, and overlaps no
// read in flight or placed (while faults bring pages in, and some
// copies are refused, leaving their pages to read again); once every
// read is done, nothing is missing.
func TestNextChunk(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 2000; round++ {
		var missing pieces
		at, orig := uint64(0x10000), uint64(0x7f0000000000)
		for range 1 + rng.IntN(8) {
			at += uint64(rng.IntN(3)) * pageSize
			orig += uint64(1+rng.IntN(4)) * pageSize
			n := uint64(1+rng.IntN(40)) * pageSize
			img := rng.IntN(3) - 1
			missing = append(missing, piece{at, at + n, img, uint64(rng.IntN(100)) * pageSize, orig})
			at += n
			orig += n
		}
		size := uint64(1+rng.IntN(16)) * pageSize
		var reading, done []span
		for {
			c, ok := nextChunk(missing, reading, size)
			if !ok {
				if len(reading) == 0 {
					break
				}
				// Every worker busy or nothing left: one read ends.
				missing = finishRead(missing, &reading, &done, rng.IntN(len(reading)), rng.IntN(4) > 0)
				continue
			}
			if c.end <= c.start || c.end-c.start > size {
				t.Fatalf("round %d: chunk %x of size %#x", round, c, size)
			}
			i := missing.find(c.start)
			if i < 0 || missing[i].cut(c.start, c.end) != c {
				t.Fatalf("round %d: chunk %x is no part of a missing piece %x", round, c, missing)
			}
			r := span{c.orig, c.orig + c.end - c.start}
			for _, s := range append(append([]span(nil), reading...), done...) {
				if s.start < r.end && r.start < s.end {
					t.Fatalf("round %d: chunk %x overlaps %x, read or being read", round, r, s)
				}
			}
			reading = append(reading, r)
			if rng.IntN(4) == 0 && len(missing) > 0 {
				// A fault brings a few pages in, some of them
				// perhaps being read.
				p := missing[rng.IntN(len(missing))]
				from := p.start + uint64(rng.IntN(int((p.end-p.start)/pageSize)))*pageSize
				missing, _ = missing.remove(from, min(p.end, from+uint64(1+rng.IntN(4))*pageSize))
			}
			if len(reading) == 3 || rng.IntN(2) == 0 {
				missing = finishRead(missing, &reading, &done, rng.IntN(len(reading)), rng.IntN(4) > 0)
			}
		}
		if len(missing) != 0 {
			t.Fatalf("round %d: %x still missing once every read is done", round, missing)
		}
	}
}

// finishRead ends read i: its pages are in, no longer missing, or, if
// not placed (a copy refused while the layout changed), still missing.
func finishRead(missing pieces, reading, done *[]span, i int, placed bool) pieces {
	r := (*reading)[i]
	*reading = append((*reading)[:i], (*reading)[i+1:]...)
	if !placed {
		return missing
	}
	*done = append(*done, r)
	for _, p := range slices.Clone(missing) {
		pEnd := p.orig + p.end - p.start
		if p.orig < r.end && r.start < pEnd {
			from, to := max(p.orig, r.start), min(pEnd, r.end)
			missing, _ = missing.remove(p.start+from-p.orig, p.start+to-p.orig)
		}
	}
	return missing
}
