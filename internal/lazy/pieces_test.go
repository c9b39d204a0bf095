package lazy

import (
	"math/rand/v2"
	"reflect"
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

// TestPiecesRemoveRandom checks remove against a page-by-page model
// over random lists and ranges: from the front (as the background copy
// takes), inside one piece, across several, and outside all.
func TestPiecesRemoveRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 13))
	for round := 0; round < 2000; round++ {
		var ps pieces
		model := map[uint64]piece{} // page -> its one-page piece
		for at := uint64(rng.IntN(4)) * page; len(ps) < 1+rng.IntN(40); {
			n := uint64(1+rng.IntN(6)) * page
			p := piece{start: at, end: at + n, img: rng.IntN(3), off: uint64(rng.IntN(100)) * page, orig: at + 0x100000}
			ps = append(ps, p)
			for a := at; a < at+n; a += page {
				model[a] = p.cut(a, a+page)
			}
			at += n + uint64(rng.IntN(3))*page
		}
		for op := 0; op < 10 && len(ps) > 0; op++ {
			var start uint64
			if rng.IntN(3) == 0 {
				start = ps[0].start
			} else {
				start = uint64(rng.IntN(int(ps[len(ps)-1].end/page)+2)) * page
			}
			end := start + uint64(1+rng.IntN(12))*page
			want := 0
			for a := start; a < end; a += page {
				if _, ok := model[a]; ok {
					want++
					delete(model, a)
				}
			}
			var removed pieces
			ps, removed = ps.remove(start, end)
			if got := removed.bytes() / page; got != uint64(want) {
				t.Fatalf("round %d: remove(%#x, %#x) removed %d pages, want %d", round, start, end, got, want)
			}
			checkModel(t, ps, model)
		}
	}
}

const page = 0x1000

// checkModel fails unless ps is sorted, without overlaps or empty
// pieces, and holds exactly the pages of model, each with its contents'
// place.
func checkModel(t *testing.T, ps pieces, model map[uint64]piece) {
	t.Helper()
	n := 0
	for i, p := range ps {
		if p.start >= p.end || i > 0 && ps[i-1].end > p.start {
			t.Fatalf("pieces not sorted apart: %x", ps)
		}
		for a := p.start; a < p.end; a += page {
			if want, ok := model[a]; !ok || p.cut(a, a+page) != want {
				t.Fatalf("page %#x: %x, want %x (ok %v)", a, p.cut(a, a+page), want, ok)
			}
			n++
		}
	}
	if n != len(model) {
		t.Fatalf("%d pages in the pieces, %d in the model", n, len(model))
	}
}
