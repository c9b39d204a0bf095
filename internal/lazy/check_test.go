package lazy

import (
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"amber/internal/image"
)

const P = image.PieceSize

// checkedImage writes size random bytes to a file and returns its
// check against the sums of those bytes, and the bytes.
func checkedImage(t *testing.T, size int) (*imageCheck, []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	var sums []uint32
	for off := 0; off < size; off += P {
		sums = append(sums, image.Checksum(data[off:min(off+P, size)]))
	}
	path := filepath.Join(t.TempDir(), "pages-1.img")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	bufs := &sync.Pool{New: func() any { b := make([]byte, P); return &b }}
	c, err := newImageCheck(int(f.Fd()), uint64(size), sums, bufs)
	if err != nil {
		t.Fatal(err)
	}
	return c, data
}

// damage changes the byte at off of c's image file.
func damage(t *testing.T, c *imageCheck, off int64) {
	t.Helper()
	f, err := os.OpenFile(fdPath(c.fd), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	f.ReadAt(b, off)
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// corruptAt tells the piece offset a CorruptError names, or -1.
func corruptAt(err error) int64 {
	var ce *CorruptError
	if errors.As(err, &ce) {
		return int64(ce.Off)
	}
	return -1
}

// TestImageCheckBytesRead: a read that holds a whole piece is checked
// by the bytes it read, not by the file read again: the bytes the
// daemon places are the bytes it checked.
func TestImageCheckBytesRead(t *testing.T) {
	c, data := checkedImage(t, 3*P+5*pageSize)
	if err := c.check(P, data[P:2*P]); err != nil {
		t.Fatalf("piece 1 as it is: %v", err)
	}
	// The file is right, the bytes read are not: a read gone wrong.
	c, data = checkedImage(t, 3*P+5*pageSize)
	buf := append([]byte(nil), data[2*P:3*P]...)
	buf[100] ^= 1
	if err := c.check(2*P, buf); corruptAt(err) != 2*P {
		t.Fatalf("piece 2 read wrong: %v, want the piece at %d damaged", err, 2*P)
	}
	// The last piece, shorter.
	if err := c.check(3*P, data[3*P:]); err != nil {
		t.Fatalf("the last piece: %v", err)
	}
}

// TestImageCheckDamaged: one byte changed in the file fails every read
// of its piece, whole or in part, and no read of another piece; the
// result is kept.
func TestImageCheckDamaged(t *testing.T) {
	c, data := checkedImage(t, 3*P+5*pageSize)
	damage(t, c, 2*P+7)
	bad := append([]byte(nil), data...)
	bad[2*P+7] ^= 0x5a
	for _, r := range []struct{ off, end int }{
		{2*P + pageSize, 2*P + 2*pageSize}, // part of it, the damage outside
		{2 * P, 3 * P},                     // whole, from the file's bytes
		{P, 2*P + pageSize},                // the piece before whole, part of it
		{2 * P, 3*P + 5*pageSize},          // it whole and the last piece
	} {
		if err := c.check(uint64(r.off), bad[r.off:r.end]); corruptAt(err) != 2*P {
			t.Errorf("read of %#x-%#x: %v, want the piece at %d damaged", r.off, r.end, err, 2*P)
		}
	}
	for _, r := range []struct{ off, end int }{{0, P}, {pageSize, 3 * pageSize}, {3 * P, 3*P + 5*pageSize}} {
		if err := c.check(uint64(r.off), data[r.off:r.end]); err != nil {
			t.Errorf("read of %#x-%#x: %v", r.off, r.end, err)
		}
	}
}

// TestImageCheckRandomReads checks random page runs side by side, with
// one piece damaged in the file: a run fails if and only if it holds a
// page of that piece.
func TestImageCheckRandomReads(t *testing.T) {
	const size = 6*P + 3*pageSize
	c, _ := checkedImage(t, size)
	const bad = 4
	damage(t, c, bad*P+P/2)
	rng := mrand.New(mrand.NewPCG(3, 5))
	type read struct{ off, end int }
	var reads []read
	for range 400 {
		off := rng.IntN(size/pageSize) * pageSize
		n := (1 + rng.IntN(2*P/pageSize)) * pageSize
		if rng.IntN(3) == 0 { // whole pieces, as the background copy reads
			off, n = rng.IntN(size/P+1)*P, P
		}
		reads = append(reads, read{off, min(off+n, size)})
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(reads); i += 4 {
				r := reads[i]
				if r.off >= r.end {
					continue
				}
				buf := make([]byte, r.end-r.off)
				if err := preadFull(c.fd, buf, uint64(r.off)); err != nil {
					t.Error(err)
					return
				}
				err := c.check(uint64(r.off), buf)
				holds := r.off < (bad+1)*P && r.end > bad*P
				if holds != (err != nil) || (holds && corruptAt(err) != bad*P) {
					t.Errorf("read of %#x-%#x: %v (holds the damaged piece: %v)", r.off, r.end, err, holds)
				}
			}
		}()
	}
	wg.Wait()
}

// TestTakeWholeImagePieces: the background copy's chunks, taken one
// after the other over random layouts of runs laid out in the image in
// order (as a dump writes them), never run past the end of an image
// piece, cover every page once, and read whole every piece that lies
// within one run: those are checked by the bytes the copy reads.
func TestTakeWholeImagePieces(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(11, 17))
	for range 300 {
		var missing pieces
		at, off := uint64(0x7f0000000000), uint64(rng.IntN(4))*pageSize
		for range 1 + rng.IntN(8) {
			at += uint64(rng.IntN(3)) * pageSize
			n := uint64(1+rng.IntN(3*P/pageSize)) * pageSize
			missing = append(missing, piece{at, at + n, 0, off, at})
			at += n
			off += n + uint64(rng.IntN(2))*pageSize // pages not missing between
		}
		want := missing.bytes()
		whole := map[uint64]bool{}
		for _, p := range missing {
			for k := (p.off + P - 1) / P; (k+1)*P <= p.off+p.end-p.start; k++ {
				whole[k] = true
			}
		}
		var got uint64
		for len(missing) > 0 {
			c, ok := missing.firstFree(nil, prefetchChunk)
			if !ok {
				t.Fatalf("nothing free in %x", missing)
			}
			c = c.toImagePieceEnd()
			if c.off/P != (c.off+c.end-c.start-1)/P {
				t.Fatalf("chunk %x runs past the end of image piece %d", c, c.off/P)
			}
			if c.off%P == 0 && c.end-c.start == P {
				delete(whole, c.off/P)
			}
			var removed pieces
			missing, removed = missing.remove(c.start, c.end)
			got += removed.bytes()
		}
		if got != want {
			t.Fatalf("chunks covered %d bytes of %d", got, want)
		}
		if len(whole) > 0 {
			t.Fatalf("image pieces %v lie within one run and no chunk read them whole", whole)
		}
	}
}
