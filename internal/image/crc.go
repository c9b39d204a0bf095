package image

import (
	"cmp"
	"fmt"
	"hash/crc32"
	"slices"
	"sync"
)

// Images are checksummed with CRC32C (Castagnoli): hash/crc32 computes it
// with the CPU's CRC instruction, at several GB/s. Large files are hashed
// in pieces by several workers at once (hash.go); CombineCRC joins the
// pieces.

// castagnoli is the CRC32C polynomial, reflected (as hash/crc32 has it).
const castagnoli = 0x82f63b78

// crcTable is read-only after package initialisation.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC32C of b.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, crcTable) }

// updateChecksum is the CRC32C of the bytes crc covers followed by b.
func updateChecksum(crc uint32, b []byte) uint32 { return crc32.Update(crc, crcTable, b) }

// CombineCRC returns the CRC32C of A followed by B, given crcA of A, crcB
// of B and the length of B.
func CombineCRC(crcA, crcB uint32, lenB int64) uint32 {
	// Appending n zero bytes multiplies a CRC's polynomial by x^(8n)
	// modulo the generator, and a CRC is linear in its input: the CRC of
	// A then B is crcA times x^(8 lenB), plus crcB.
	return mulModP(xPow8n(lenB), crcA) ^ crcB
}

// mulModP multiplies two polynomials modulo the CRC32C generator, in the
// reflected bit order (the top bit is x^0).
func mulModP(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		if b&1 != 0 {
			b = b>>1 ^ castagnoli
		} else {
			b >>= 1
		}
	}
	return p
}

// xPow8n is x^(8n) modulo the generator: square-and-multiply over the
// bits of n, starting from x^8.
func xPow8n(n int64) uint32 {
	p := uint32(1) << 31  // x^0
	sq := uint32(1) << 23 // x^8
	for ; n > 0; n >>= 1 {
		if n&1 != 0 {
			p = mulModP(p, sq)
		}
		sq = mulModP(sq, sq)
	}
	return p
}

// Sum is the size and CRC32C of a file, as the manifest records them.
type Sum struct {
	Size int64
	CRC  uint32
}

// ChunkSums collects the CRC32C of pieces of one file hashed out of order
// (by several workers at once) and gives the CRC32C of the whole. Its
// methods may be called from several goroutines.
type ChunkSums struct {
	mu     sync.Mutex
	chunks []chunkSum
}

type chunkSum struct {
	off int64
	Sum
}

// Add records the sum of the piece of the file at offset off.
func (c *ChunkSums) Add(off int64, s Sum) {
	c.mu.Lock()
	c.chunks = append(c.chunks, chunkSum{off, s})
	c.mu.Unlock()
}

// Sum joins the pieces, which must cover the file from offset 0 without
// gap or overlap.
func (c *ChunkSums) Sum() (Sum, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// An empty piece sorts before a piece at its offset, whose end would
	// leave it behind.
	slices.SortFunc(c.chunks, func(a, b chunkSum) int {
		return cmp.Or(cmp.Compare(a.off, b.off), cmp.Compare(a.Size, b.Size))
	})
	var s Sum
	// Most pieces have one size, whose x^(8n) is worked out once: a
	// 512 MiB dump has thousands of them.
	var size int64 = -1
	var shift uint32
	for _, p := range c.chunks {
		if p.off != s.Size {
			return Sum{}, fmt.Errorf("checksum pieces: piece at %d, want one at %d", p.off, s.Size)
		}
		if p.Size != size {
			size, shift = p.Size, xPow8n(p.Size)
		}
		s = Sum{s.Size + p.Size, mulModP(shift, s.CRC) ^ p.CRC}
	}
	return s, nil
}

// PieceSize is how much of a pages image one piece sum of the manifest
// covers. A lazy restore checks only the pieces it reads itself, and the
// lazy-pages daemon checks each piece before it places a page from it: a
// fault on a piece not checked yet waits for one piece's read and hash
// (about 0.1 ms for 1 MiB from the page cache), and a 1 GiB image has
// 1,024 sums, 9 KiB of manifest. The daemon's background copy moves
// 1 MiB at a time too.
const PieceSize = 1 << 20

// AddPieces hashes b, the bytes of the file at offset off, and records
// its sums cut at every multiple of PieceSize, so that Pieces can give
// the sum of each piece of the file however the writes were cut.
func (c *ChunkSums) AddPieces(off int64, b []byte) {
	for len(b) > 0 {
		n := min(int64(len(b)), PieceSize-off%PieceSize)
		c.Add(off, Sum{Size: n, CRC: Checksum(b[:n])})
		off, b = off+n, b[n:]
	}
}

// Pieces joins the recorded sums, which must cover the file from offset
// 0 without gap or overlap and none of which may cross a multiple of
// PieceSize, into the CRC32C of each piece of PieceSize bytes (the last
// one shorter).
func (c *ChunkSums) Pieces() ([]uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	slices.SortFunc(c.chunks, func(a, b chunkSum) int {
		return cmp.Or(cmp.Compare(a.off, b.off), cmp.Compare(a.Size, b.Size))
	})
	var out []uint32
	var at int64
	for _, p := range c.chunks {
		if p.off != at {
			return nil, fmt.Errorf("checksum pieces: piece at %d, want one at %d", p.off, at)
		}
		if p.Size > 0 && p.off/PieceSize != (p.off+p.Size-1)/PieceSize {
			return nil, fmt.Errorf("checksum pieces: %d bytes at %d cross a piece boundary", p.Size, p.off)
		}
		switch {
		case p.Size == 0:
		case p.off%PieceSize == 0:
			out = append(out, p.CRC)
		default:
			out[len(out)-1] = CombineCRC(out[len(out)-1], p.CRC, p.Size)
		}
		at += p.Size
	}
	return out, nil
}

// JoinPieces is the sum of a file of size bytes whose pieces of
// PieceSize bytes have the CRC32C pieces.
func JoinPieces(size int64, pieces []uint32) Sum {
	// Every piece but the last has PieceSize bytes, whose x^(8n) is
	// worked out once: for each of a 1 GiB image's 1,024 pieces it took
	// a millisecond of every restore.
	whole := xPow8n(PieceSize)
	s := Sum{}
	for i, crc := range pieces {
		n := min(PieceSize, size-int64(i)*PieceSize)
		shift := whole
		if n != PieceSize {
			shift = xPow8n(n)
		}
		s = Sum{s.Size + n, mulModP(shift, s.CRC) ^ crc}
	}
	return s
}

// PieceCount is how many pieces of PieceSize bytes a file of size bytes
// has.
func PieceCount(size int64) int { return int((size + PieceSize - 1) / PieceSize) }
