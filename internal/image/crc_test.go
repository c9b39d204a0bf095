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

// TestChunkSumsPieces cuts files of random sizes into random writes,
// added in random order: Pieces gives each image.PieceSize piece's CRC32C,
// which image.JoinPieces joins into the whole file's.
func TestChunkSumsPieces(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 13))
	data := make([]byte, 5*image.PieceSize)
	rand.NewChaCha8([32]byte{3}).Read(data)
	for round := range 50 {
		size := rng.Int64N(int64(len(data)) + 1)
		if round < 4 {
			size = []int64{0, 1, image.PieceSize, 2 * image.PieceSize}[round]
		}
		file := data[:size]
		var writes [][2]int64
		for off := int64(0); off < size; {
			n := min(size-off, 1+rng.Int64N(2*image.PieceSize))
			writes = append(writes, [2]int64{off, n})
			off += n
		}
		rng.Shuffle(len(writes), func(i, j int) { writes[i], writes[j] = writes[j], writes[i] })
		var c image.ChunkSums
		for _, w := range writes {
			c.AddPieces(w[0], file[w[0]:w[0]+w[1]])
		}
		pieces, err := c.Pieces()
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if len(pieces) != image.PieceCount(size) {
			t.Fatalf("size %d: %d pieces, want %d", size, len(pieces), image.PieceCount(size))
		}
		for i, crc := range pieces {
			if want := image.Checksum(file[int64(i)*image.PieceSize : min(size, int64(i+1)*image.PieceSize)]); crc != want {
				t.Errorf("size %d: piece %d: %08x, want %08x", size, i, crc, want)
			}
		}
		whole, err := c.Sum()
		if want := (image.Sum{size, image.Checksum(file)}); err != nil || whole != want || image.JoinPieces(size, pieces) != want {
			t.Errorf("size %d: Sum %+v (%v), image.JoinPieces %+v, want %+v", size, whole, err, image.JoinPieces(size, pieces), want)
		}
	}
}

// TestPiecesDamage flips a byte at the start, the end and either side of
// every piece boundary of a file: exactly the piece holding it changes
// its sum.
func TestPiecesDamage(t *testing.T) {
	data := make([]byte, 3*image.PieceSize+5000)
	rand.NewChaCha8([32]byte{4}).Read(data)
	sums := func(b []byte) []uint32 {
		var c image.ChunkSums
		c.AddPieces(0, b)
		p, err := c.Pieces()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := sums(data)
	at := []int{0, len(data) - 1}
	for k := 1; k*image.PieceSize < len(data); k++ {
		at = append(at, k*image.PieceSize-1, k*image.PieceSize)
	}
	for _, off := range at {
		data[off] ^= 0x10
		got := sums(data)
		data[off] ^= 0x10
		for i := range good {
			if changed := got[i] != good[i]; changed != (i == off/image.PieceSize) {
				t.Errorf("byte %d flipped: piece %d changed %v", off, i, changed)
			}
		}
	}
}

// TestPiecesCrossing refuses sums that straddle a piece boundary, which
// could not be cut into piece sums.
func TestPiecesCrossing(t *testing.T) {
	var c image.ChunkSums
	c.Add(0, image.Sum{Size: image.PieceSize + 1, CRC: 1})
	if _, err := c.Pieces(); err == nil {
		t.Error("a sum across a piece boundary accepted")
	}
}
