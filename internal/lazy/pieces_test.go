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

// A background copy takes the first missing pages that no other one
// copies: the same dump pages are taken wherever the process moved them.
func TestPiecesFirstFree(t *testing.T) {
	ps := pieces{{0x1000, 0x5000, 0, 0, 0x1000}, {0x20000, 0x24000, 0, 0x4000, 0x5000}, {0x30000, 0x32000, -1, 0, 0x30000}}
	for _, c := range []struct {
		name  string
		taken []piece
		size  uint64
		want  piece
		ok    bool
	}{
		{"nothing taken", nil, 0x2000, piece{0x1000, 0x3000, 0, 0, 0x1000}, true},
		{"the start taken", []piece{{0x1000, 0x3000, 0, 0, 0x1000}}, 0x10000, piece{0x3000, 0x5000, 0, 0x2000, 0x3000}, true},
		{"cut before a taken run", []piece{{0x3000, 0x4000, 0, 0x2000, 0x3000}}, 0x10000, piece{0x1000, 0x3000, 0, 0, 0x1000}, true},
		{"taken where the process had it at the dump", []piece{{0x9000, 0xa000, 0, 0, 0x1000}}, 0x1000, piece{0x2000, 0x3000, 0, 0x1000, 0x2000}, true},
		{"a moved piece taken by its dump address", []piece{{0x1000, 0x5000, 0, 0, 0x1000}, {0x5000, 0x7000, 0, 0x4000, 0x5000}}, 0x10000, piece{0x22000, 0x24000, 0, 0x6000, 0x7000}, true},
		{"another source's pages are not taken", []piece{{0x1000, 0x5000, -1, 0, 0x1000}}, 0x1000, piece{0x1000, 0x2000, 0, 0, 0x1000}, true},
		{"all taken", ps, 0x1000, piece{}, false},
	} {
		got, ok := ps.firstFree(c.taken, c.size)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: got %x %v, want %x %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

// firstFree against a page-by-page search over random pieces, moved
// about, with random runs taken.
func TestPiecesFirstFreeRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		ps, taken := randomPieces(r), randomTaken(r)
		size := uint64(1+r.IntN(8)) * pageSize
		got, ok := ps.firstFree(taken, size)
		want, wantOK := firstFreeByPage(ps, taken, size)
		if got != want || ok != wantOK {
			t.Fatalf("pieces %x, taken %x, size %#x: got %x %v, want %x %v", ps, taken, size, got, ok, want, wantOK)
		}
	}
}

// randomPieces are up to 6 runs of dump pages of images 0 and 1, in
// an order of their own in memory, as after mremaps.
func randomPieces(r *rand.Rand) pieces {
	var runs pieces
	orig := uint64(0x1000)
	for range 1 + r.IntN(6) {
		orig += uint64(r.IntN(3)) * pageSize
		n := uint64(1+r.IntN(6)) * pageSize
		runs = append(runs, piece{0, n, r.IntN(2), orig, orig})
		orig += n
	}
	var ps pieces
	at := uint64(0x100000)
	for _, i := range r.Perm(len(runs)) {
		p := runs[i]
		at += uint64(r.IntN(3)) * pageSize
		p.start, p.end = at, at+p.end
		ps = append(ps, p)
		at = p.end
	}
	return ps
}

// randomTaken are up to 3 runs of dump pages of images 0 and 1.
func randomTaken(r *rand.Rand) []piece {
	var taken []piece
	for range r.IntN(4) {
		orig := uint64(1+r.IntN(40)) * pageSize
		n := uint64(1+r.IntN(6)) * pageSize
		taken = append(taken, piece{0, n, r.IntN(2), orig, orig})
	}
	return taken
}

// firstFreeByPage is firstFree page by page.
func firstFreeByPage(ps pieces, taken []piece, size uint64) (piece, bool) {
	isFree := func(p piece, addr uint64) bool {
		pg := p.cut(addr, addr+pageSize)
		for _, b := range taken {
			if pg.overlaps(b) {
				return false
			}
		}
		return true
	}
	for _, p := range ps {
		for a := p.start; a < p.end; a += pageSize {
			if !isFree(p, a) {
				continue
			}
			end := a
			for end < p.end && end-a < size && isFree(p, end) {
				end += pageSize
			}
			return p.cut(a, end), true
		}
	}
	return piece{}, false
}

// The pages of a chunk read from the images are found wherever the
// process has them now, and only those of its source.
func TestPiecesHolding(t *testing.T) {
	ps := pieces{{0x1000, 0x3000, 0, 0, 0x9000}, {0x5000, 0x6000, 0, 0x3000, 0x1000}, {0x8000, 0x9000, -1, 0, 0x2000}}
	got := ps.holding(piece{0x1000, 0x4000, 0, 0x1000, 0x1000}, true)
	want := pieces{{0x5000, 0x6000, 0, 0x3000, 0x1000}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
	got = ps.holding(piece{0, 0x1000, 0, 0, 0xa000}, true)
	want = pieces{{0x2000, 0x3000, 0, 0x1000, 0xa000}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
}

// TestPiecesHoldingUnmoved checks the search of holding for pieces no
// mremap moved against the walk of them all, over random lists of
// pieces of several images and random chunks read.
func TestPiecesHoldingUnmoved(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 5))
	for round := 0; round < 2000; round++ {
		var ps pieces
		for at := uint64(rng.IntN(4)) * pageSize; len(ps) < 1+rng.IntN(60); {
			n := uint64(1+rng.IntN(8)) * pageSize
			ps = append(ps, piece{start: at, end: at + n, img: rng.IntN(3) - 1, off: uint64(rng.IntN(100)) * pageSize, orig: at})
			at += n + uint64(rng.IntN(3))*pageSize
		}
		end := ps[len(ps)-1].end
		for range 20 {
			start := uint64(rng.IntN(int(end/pageSize)+2)) * pageSize
			n := uint64(1+rng.IntN(12)) * pageSize
			p := piece{start: start, end: start + n, img: rng.IntN(3) - 1, off: uint64(rng.IntN(100)) * pageSize, orig: start}
			got, want := ps.holding(p, false), ps.holding(p, true)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d: holding %x of %x: got %x, the walk of all %x", round, p, ps, got, want)
			}
		}
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
		for at := uint64(rng.IntN(4)) * pageSize; len(ps) < 1+rng.IntN(40); {
			n := uint64(1+rng.IntN(6)) * pageSize
			p := piece{start: at, end: at + n, img: rng.IntN(3), off: uint64(rng.IntN(100)) * pageSize, orig: at + 0x100000}
			ps = append(ps, p)
			for a := at; a < at+n; a += pageSize {
				model[a] = p.cut(a, a+pageSize)
			}
			at += n + uint64(rng.IntN(3))*pageSize
		}
		for op := 0; op < 10 && len(ps) > 0; op++ {
			var start uint64
			if rng.IntN(3) == 0 {
				start = ps[0].start
			} else {
				start = uint64(rng.IntN(int(ps[len(ps)-1].end/pageSize)+2)) * pageSize
			}
			end := start + uint64(1+rng.IntN(12))*pageSize
			want := 0
			for a := start; a < end; a += pageSize {
				if _, ok := model[a]; ok {
					want++
					delete(model, a)
				}
			}
			var removed pieces
			ps, removed = ps.remove(start, end)
			if got := removed.bytes() / pageSize; got != uint64(want) {
				t.Fatalf("round %d: remove(%#x, %#x) removed %d pages, want %d", round, start, end, got, want)
			}
			checkModel(t, ps, model)
		}
	}
}

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
		for a := p.start; a < p.end; a += pageSize {
			if want, ok := model[a]; !ok || p.cut(a, a+pageSize) != want {
				t.Fatalf("pageSize %#x: %x, want %x (ok %v)", a, p.cut(a, a+pageSize), want, ok)
			}
			n++
		}
	}
	if n != len(model) {
		t.Fatalf("%d pages in the pieces, %d in the model", n, len(model))
	}
}
