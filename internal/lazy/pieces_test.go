package lazy

import (
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
