package compel

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// TestSearchChunks plants each kind of gadget at offsets on both sides of
// chunk borders, and at random ones, in ranges of various sizes, and
// checks that the chunked search finds each where the whole-range search
// does, stops reading once it has them all, and keeps what it found when
// a read comes short.
func TestSearchChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	plantedAll := 0
	sizes := []uint64{100, searchChunk - 1, searchChunk, searchChunk + 5, 3*searchChunk + 17, 8 * searchChunk}
	for _, size := range sizes {
		for round := range 40 {
			buf := bytes.Repeat([]byte{0x90}, int(size))
			planted := 0
			for k := range gadgetKinds {
				p := gadgetKinds[k][rng.IntN(len(gadgetKinds[k]))]
				if rng.IntN(5) == 0 || uint64(len(p)) > size {
					continue // not in this range
				}
				at := plantAt(rng, round, size, len(p))
				if overlaps(buf[at : at+len(p)]) {
					continue
				}
				copy(buf[at:], p)
				planted++
			}
			plantedAll += planted
			want := searchBytes(buf)
			var read uint64
			got := searchChunks(size, func(off uint64, b []byte) (int, error) {
				read = off + uint64(len(b))
				return copy(b, buf[off:]), nil
			})
			if got != want {
				t.Fatalf("size %d round %d: chunks found %v, whole range %v", size, round, got, want)
			}
			if all := want[0] >= 0 && want[1] >= 0 && want[2] >= 0; all {
				last := uint64(max(want[0], want[1], want[2]))
				if read > last+searchChunk+gadgetOverlap {
					t.Errorf("size %d: read %d bytes for gadgets ending by %d", size, read, last+9)
				}
			}
		}
	}
	if plantedAll < 400 {
		t.Fatalf("only %d gadgets planted", plantedAll)
	}
	// A read that comes short (a file shorter than its mapping) ends the
	// search with what was found before.
	buf := bytes.Repeat([]byte{0x90}, 2*searchChunk)
	copy(buf[10:], insnSyscallRet)
	got := searchChunks(4*searchChunk, func(off uint64, b []byte) (int, error) {
		if off >= uint64(len(buf)) {
			return 0, io.EOF
		}
		n := copy(b, buf[off:])
		if n < len(b) {
			return n, io.EOF
		}
		return n, nil
	})
	if got != [3]int64{10, 10, -1} {
		t.Errorf("short file: %v, want syscall and syscall;ret at 10", got)
	}
	if got := searchChunks(searchChunk, func(uint64, []byte) (int, error) { return 0, errors.New("EIO") }); got != [3]int64{-1, -1, -1} {
		t.Errorf("failed read: %v, want nothing found", got)
	}
}

// plantAt picks where to plant an n-byte gadget in size bytes: across or
// next to a chunk border for most rounds, anywhere for the others.
func plantAt(rng *rand.Rand, round int, size uint64, n int) int {
	last := int(size) - n
	if size > searchChunk && round%2 == 0 {
		border := searchChunk * (1 + rng.IntN(int(size/searchChunk)))
		return min(max(border-n+rng.IntN(2*n), 0), last)
	}
	return rng.IntN(last + 1)
}

// overlaps says whether b already holds a planted gadget's bytes.
func overlaps(b []byte) bool { return len(bytes.Trim(b, "\x90")) > 0 }
