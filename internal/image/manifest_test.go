package image_test

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"amber/internal/image"
)

func sampleManifest() *image.Manifest {
	pieces := []uint32{0x01020304, 0xdeadbeef, 0x0badf00d}
	return &image.Manifest{Files: []image.ManifestFile{
		{Name: "pstree.img", Sum: image.Sum{Size: 38, CRC: 0x0badf00d}},
		{Name: "amber-mtimes.txt", Sum: image.Sum{Size: 0, CRC: 0}},
		{Name: "pages-1.img", Sum: image.JoinPieces(2*image.PieceSize+4096, pieces), Pieces: pieces},
	}}
}

func TestManifestRoundTrip(t *testing.T) {
	m := sampleManifest()
	b := m.Marshal()
	got, err := image.ParseManifest(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	want := []string{"amber-mtimes.txt", "pages-1.img", "pstree.img"} // sorted
	if len(got.Files) != len(want) {
		t.Fatalf("got %+v", got.Files)
	}
	for i, f := range got.Files {
		orig := m.Files[(i+1)%3]
		if f.Name != want[i] || !reflect.DeepEqual(f, orig) {
			t.Errorf("file %d: got %+v, want %+v", i, f, orig)
		}
	}
	empty, err := image.ParseManifest((&image.Manifest{}).Marshal())
	if err != nil || len(empty.Files) != 0 {
		t.Errorf("empty manifest: %+v, %v", empty, err)
	}
}

// TestManifestTruncated cuts the manifest at every length: each must be
// refused.
func TestManifestTruncated(t *testing.T) {
	b := sampleManifest().Marshal()
	for n := range len(b) {
		if _, err := image.ParseManifest(b[:n]); err == nil {
			t.Errorf("cut to %d bytes: accepted:\n%s", n, b[:n])
		}
	}
}

// TestManifestFlipped changes each byte of the manifest in turn: each
// change must be refused, the end line's CRC covering the rest.
func TestManifestFlipped(t *testing.T) {
	b := sampleManifest().Marshal()
	for i := range b {
		for _, x := range []byte{0x01, 0x20, 0x80} {
			c := bytes.Clone(b)
			c[i] ^= x
			if _, err := image.ParseManifest(c); err == nil {
				t.Errorf("byte %d ^ %#x: accepted:\n%s", i, x, c)
			}
		}
	}
}

// withEnd appends a valid end line to body, as a tool that rewrote the
// manifest would: the bad lines themselves must be refused.
func withEnd(body string, count int) []byte {
	return fmt.Appendf([]byte(body), "end %d %08x\n", count, image.Checksum([]byte(body)))
}

func TestManifestBadLines(t *testing.T) {
	const head = "amber-manifest 1\n"
	for _, tc := range []struct {
		name, body string
		count      int
		want       string
	}{
		{"good", head + "a.img 1 0000000a\n", 1, ""},
		{"header", "amber-manifest 3\na.img 1 0000000a\n", 1, "line 1"},
		{"pieces in v1", head + "a.img 1 0000000a 0000000a\n", 1, "want NAME SIZE CRC32C"},
		{"fields", head + "a.img 1\n", 1, "want NAME SIZE CRC32C"},
		{"extra field", head + "a.img 1 0000000a x\n", 1, "want NAME SIZE CRC32C"},
		{"double space", head + "a.img  1 0000000a\n", 1, "want NAME SIZE CRC32C"},
		{"slash", head + "../a.img 1 0000000a\n", 1, "want NAME SIZE CRC32C"},
		{"dotdot", head + ".. 1 0000000a\n", 1, "want NAME SIZE CRC32C"},
		{"size", head + "a.img -1 0000000a\n", 1, "size"},
		{"size word", head + "a.img ten 0000000a\n", 1, "size"},
		{"short crc", head + "a.img 1 000000a\n", 1, "8 hex digits"},
		{"crc word", head + "a.img 1 0000000g\n", 1, "8 hex digits"},
		{"twice", head + "a.img 1 0000000a\na.img 2 0000000b\n", 2, "twice"},
		{"count", head + "a.img 1 0000000a\n", 2, "damaged"},
		{"blank", head + "\na.img 1 0000000a\n", 1, "want NAME SIZE CRC32C"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := image.ParseManifest(withEnd(tc.body, tc.count))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	if _, err := image.ParseManifest([]byte(head + "a.img 1 0000000a\n" + "end 1 00000000\n")); err == nil {
		t.Error("wrong end CRC accepted")
	}
	if _, err := image.ParseManifest(withEnd(head+"a.img 1 0000000a\n", 1)); err != nil {
		t.Errorf("a version 1 manifest refused: %v", err)
	}
	good := withEnd(head, 0)
	if _, err := image.ParseManifest(append(good, "x\n"...)); err == nil {
		t.Error("a line after the end line accepted")
	}
}

// TestManifestBadPieces refuses piece sums that are not one per piece of
// the file or do not join into its CRC32C.
func TestManifestBadPieces(t *testing.T) {
	const head = "amber-manifest 2\n"
	a, b := image.Checksum([]byte("a")), image.Checksum([]byte("b"))
	size := int64(image.PieceSize + 1)
	whole := image.JoinPieces(size, []uint32{a, b})
	line := func(size int64, crc uint32, pieces string) string {
		return fmt.Sprintf("pages-1.img %d %08x %s\n", size, crc, pieces)
	}
	for _, tc := range []struct {
		name, line, want string
	}{
		{"good", line(size, whole.CRC, fmt.Sprintf("%08x,%08x", a, b)), ""},
		{"too few", line(size, whole.CRC, fmt.Sprintf("%08x", a)), "want 2"},
		{"too many", line(size, whole.CRC, fmt.Sprintf("%08x,%08x,%08x", a, b, b)), "want 2"},
		{"swapped", line(size, whole.CRC, fmt.Sprintf("%08x,%08x", b, a)), "join"},
		{"whole", line(size, whole.CRC^1, fmt.Sprintf("%08x,%08x", a, b)), "join"},
		{"short", line(size, whole.CRC, fmt.Sprintf("%08x,1234567", a)), "8 hex digits"},
		{"empty file", line(0, 0, ""), "want 0"},
		{"trailing comma", line(size, whole.CRC, fmt.Sprintf("%08x,%08x,", a, b)), "want 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := image.ParseManifest(withEnd(head+tc.line, 1))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == "" && !reflect.DeepEqual(m.Files[0].Pieces, []uint32{a, b}):
				t.Fatalf("pieces %x", m.Files[0].Pieces)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}
