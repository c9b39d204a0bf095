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

// TestCombineCRCSplits cuts random buffers at random points into one to
// eight pieces, some empty, some of one byte, of lengths of every
// remainder modulo 4 and 8, and joins the pieces' CRC32Cs both one after
// the other with CombineCRC and out of order through ChunkSums: each must
// be hash/crc32's CRC32C of the whole buffer.
func TestCombineCRCSplits(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	data := make([]byte, 1<<17)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for c := range 5000 {
		n := rng.IntN(600)
		if c%10 == 0 {
			n = rng.IntN(len(data) + 1)
		}
		buf := data[rng.IntN(len(data)-n+1):][:n]
		cuts := randomCuts(rng, n, 1+rng.IntN(8))
		want := crc32.Checksum(buf, castagnoli)
		var crc uint32
		for i, off := range cuts[:len(cuts)-1] {
			piece := buf[off:cuts[i+1]]
			crc = image.CombineCRC(crc, image.Checksum(piece), int64(len(piece)))
		}
		var sums image.ChunkSums
		for _, i := range rng.Perm(len(cuts) - 1) {
			piece := buf[cuts[i]:cuts[i+1]]
			sums.Add(int64(cuts[i]), image.Sum{Size: int64(len(piece)), CRC: image.Checksum(piece)})
		}
		if crc != want {
			t.Fatalf("%d bytes cut at %v: combined %08x, want %08x", n, cuts, crc, want)
		}
		if got, err := sums.Sum(); err != nil || got != (image.Sum{Size: int64(n), CRC: want}) {
			t.Fatalf("%d bytes cut at %v: ChunkSums %+v, %v; want CRC %08x", n, cuts, got, err, want)
		}
	}
}

// randomCuts returns pieces+1 offsets from 0 to n, in order: random, or
// repeated (an empty piece), or one apart (a piece of one byte).
func randomCuts(rng *rand.Rand, n, pieces int) []int {
	cuts := make([]int, pieces+1)
	cuts[pieces] = n
	for i := 1; i < pieces; i++ {
		switch prev := cuts[i-1]; rng.IntN(4) {
		case 0:
			cuts[i] = prev
		case 1:
			cuts[i] = min(prev+1, n)
		default:
			cuts[i] = prev + rng.IntN(n-prev+1)
		}
	}
	return cuts
}
