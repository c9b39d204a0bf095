package image_test

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"

	"amber/internal/image"
)

// TestCombineCRC checks the combination of two CRCs against the CRC of
// the joined bytes, for lengths around the bits of the length walk.
func TestCombineCRC(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, lens := range [][2]int{{0, 0}, {0, 5}, {5, 0}, {1, 1}, {3, 4096}, {4096, 1}, {1000, 65537}, {7, 1 << 20}} {
		a, b := make([]byte, lens[0]), make([]byte, lens[1])
		for i := range a {
			a[i] = byte(rng.Uint32())
		}
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		want := crc32.Checksum(append(a, b...), crc32.MakeTable(crc32.Castagnoli))
		if got := image.CombineCRC(image.Checksum(a), image.Checksum(b), int64(len(b))); got != want {
			t.Errorf("lengths %v: combined %08x, want %08x", lens, got, want)
		}
	}
}

// TestChunkSums hashes a buffer in pieces added out of order, of sizes
// that repeat (one shift for many pieces) and change back and forth.
func TestChunkSums(t *testing.T) {
	buf := make([]byte, 20000)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	var c image.ChunkSums
	cuts := []int{0, 1, 4096, 8191, 12286, 12287, 16382, 20000}
	for i := len(cuts) - 2; i >= 0; i-- {
		b := buf[cuts[i]:cuts[i+1]]
		c.Add(int64(cuts[i]), image.Sum{Size: int64(len(b)), CRC: image.Checksum(b)})
	}
	got, err := c.Sum()
	if err != nil {
		t.Fatal(err)
	}
	if want := (image.Sum{Size: int64(len(buf)), CRC: image.Checksum(buf)}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	var gap image.ChunkSums
	gap.Add(0, image.Sum{Size: 10})
	gap.Add(11, image.Sum{Size: 10})
	if _, err := gap.Sum(); err == nil {
		t.Error("pieces with a gap: no error")
	}
}
