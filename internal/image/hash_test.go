package image

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHashWorkers: the background check starts with one worker fewer
// than its CPUs, at least one, and Wait brings them up to one per CPU.
func TestHashWorkers(t *testing.T) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	one, two := unix.CPUSet{}, unix.CPUSet{}
	one.Set(0)
	two.Set(0)
	two.Set(1)
	for _, c := range []struct {
		cpus      *unix.CPUSet
		start, at int
	}{{nil, max(1, runtime.NumCPU()-1), runtime.NumCPU()}, {&one, 1, 1}, {&two, 1, 2}, {&all, max(1, all.Count()-1), all.Count()}} {
		if got := hashWorkers(c.cpus); got != c.start {
			t.Errorf("hashWorkers(%v) = %d, want %d", c.cpus, got, c.start)
		}
		if got := allWorkers(c.cpus); got != c.at {
			t.Errorf("allWorkers(%v) = %d, want %d", c.cpus, got, c.at)
		}
	}
}

// TestHashFile: a large file hashes to its CRC32C, over sizes that end
// inside a piece, on one, or before the first ends; and so it does in
// pieces of odd sizes with one to five workers.
func TestHashFile(t *testing.T) {
	data := make([]byte, 3*hashPiece+12345)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	f := tempFile(t, "pages-1.img", data)
	for _, size := range []int64{int64(len(data)), 2 * hashPiece, hashPiece + 1, hashBuf + 3, 1, 0} {
		want := Checksum(data[:size])
		sums, err := hashFile(f, size)
		var got Sum
		if err == nil {
			got, err = sums.Sum()
		}
		if err != nil || got != (Sum{Size: size, CRC: want}) {
			t.Errorf("size %d: hashFile = %+v, %v; want CRC %08x", size, got, err, want)
		}
	}
	for _, piece := range []int64{1 << 20, 1<<20 + 3, 999_999} {
		for workers := 1; workers <= 5; workers++ {
			q := newHashQueue([]pendingFile{{f, Sum{Size: 5<<20 + 7}}}, piece, false)
			err := q.run(workers)
			got, _ := q.files[0].sums.Sum()
			if want := Checksum(data[:5<<20+7]); err != nil || got.CRC != want {
				t.Errorf("pieces of %d, %d workers: %+v, %v; want CRC %08x", piece, workers, got, err, want)
			}
		}
	}
}

// checkPiece is the piece size of the tests of the background check:
// small, so that their files take many pieces, and odd.
const checkPiece = 64<<10 + 3

// checkFixture writes an images directory of a small image and two pages
// images of many pieces each (the second ending inside a piece), and its
// manifest.
func checkFixture(t *testing.T) (dir string, pages2 []byte) {
	t.Helper()
	dir = t.TempDir()
	pages2 = make([]byte, 7*checkPiece+1001)
	for i := range pages2 {
		pages2[i] = byte(i*13 + i>>11)
	}
	for name, b := range map[string][]byte{
		"inventory.img": []byte("inventory"),
		"pages-1.img":   pages2[:3*checkPiece],
		"pages-2.img":   pages2,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d := openDir(t, dir)
	if err := WriteManifest(d, nil); err != nil {
		t.Fatal(err)
	}
	return dir, pages2
}

func openDir(t *testing.T, path string) Dir {
	t.Helper()
	d, err := OpenDir(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// checkPieces runs the whole check of dir with the pages images hashed in
// the background in pieces of checkPiece bytes.
func checkPieces(t *testing.T, dir string) error {
	t.Helper()
	c, err := verifyManifest(openDir(t, dir), IsPagesName, false, checkPiece)
	if err != nil {
		return err
	}
	return c.Wait()
}

// TestCheckPieces: the background check in pieces passes the images as
// written and finds one byte changed anywhere in a pages image: first,
// in the middle, either side of the boundary between two pieces, last.
func TestCheckPieces(t *testing.T) {
	dir, pages2 := checkFixture(t)
	if err := checkPieces(t, dir); err != nil {
		t.Fatalf("images as written: %v", err)
	}
	path := filepath.Join(dir, "pages-2.img")
	n := int64(len(pages2))
	for _, off := range []int64{0, n / 2, checkPiece - 1, checkPiece, 4*checkPiece - 1, 4 * checkPiece, n - 1} {
		flipByte(t, path, off)
		err := checkPieces(t, dir)
		requireCRCError(t, err, path)
		flipByte(t, path, off)
		if err := checkPieces(t, dir); err != nil {
			t.Fatalf("byte %d flipped back: %v", off, err)
		}
	}
}

// TestCheckPiecesFirstFile: a changed byte in the first pages image is
// reported, not hidden by the second.
func TestCheckPiecesFirstFile(t *testing.T) {
	dir, _ := checkFixture(t)
	path := filepath.Join(dir, "pages-1.img")
	flipByte(t, path, 2*checkPiece+5)
	requireCRCError(t, checkPieces(t, dir), path)
}

// TestCheckPiecesTruncated: a pages image truncated before the check is
// found by its size; one truncated while it is hashed, by the read that
// finds its end.
func TestCheckPiecesTruncated(t *testing.T) {
	dir, pages2 := checkFixture(t)
	path := filepath.Join(dir, "pages-2.img")
	if err := os.Truncate(path, int64(len(pages2))-1); err != nil {
		t.Fatal(err)
	}
	err := checkPieces(t, dir)
	var me *ManifestError
	if !errors.As(err, &me) || me.Path != path || !strings.Contains(me.Problem, "truncated") {
		t.Fatalf("truncated by a byte: %v; want a size mismatch of %s", err, path)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, size := range []int64{0, checkPiece, 5*checkPiece + 1} {
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
		q := newHashQueue([]pendingFile{{f, Sum{int64(len(pages2)), Checksum(pages2)}}}, checkPiece, true)
		err := q.run(3)
		if err == nil || !strings.HasPrefix(err.Error(), path+": ") || !strings.Contains(err.Error(), "unexpected EOF") {
			t.Errorf("truncated to %d while hashed: %v; want a short read of %s", size, err, path)
		}
	}
}

// TestCheckPiecesStop: a check stopped early ends, with nothing said.
func TestCheckPiecesStop(t *testing.T) {
	dir, _ := checkFixture(t)
	c, err := verifyManifest(openDir(t, dir), IsPagesName, false, checkPiece)
	if err != nil {
		t.Fatal(err)
	}
	c.Stop()
	if err := c.Wait(); err != nil && !errors.Is(err, errStopped) {
		t.Errorf("after Stop: %v", err)
	}
	// Stopped before a piece is hashed: never a success.
	f, err := os.Open(filepath.Join(dir, "pages-2.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	q := newHashQueue([]pendingFile{{f, Sum{Size: 3 * checkPiece}}}, checkPiece, true)
	q.stop.Store(true)
	if err := q.run(2); !errors.Is(err, errStopped) {
		t.Errorf("queue stopped at once: %v; want errStopped", err)
	}
}

func requireCRCError(t *testing.T, err error, path string) {
	t.Helper()
	var me *ManifestError
	if !errors.As(err, &me) || me.Path != path || !strings.Contains(me.Problem, "CRC32C") {
		t.Fatalf("got %v; want a CRC32C mismatch of %s", err, path)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func tempFile(t *testing.T, name string, data []byte) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestWaitPieces: a lazy restore's check hashes every piece of a pages
// image but those wholly in the spans left to the daemon; it finds a
// changed byte in any other piece, at either side of a boundary, and
// leaves one in a lazy piece to the daemon, to whom Pieces gives the
// sums.
func TestWaitPieces(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 3*PieceSize+5000)
	rand.NewChaCha8([32]byte{5}).Read(data)
	path := filepath.Join(dir, "pages-1.img")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteManifest(openDir(t, dir), nil); err != nil {
		t.Fatal(err)
	}
	wait := func(lazy ...Span) error {
		c, err := VerifyManifestLazy(openDir(t, dir), IsPagesName)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Stop()
		if got := c.Pieces("pages-1.img"); len(got) != 4 {
			t.Fatalf("Pieces: %d sums, want 4", len(got))
		}
		return c.WaitPieces(map[string][]Span{"pages-1.img": lazy})
	}
	const P = PieceSize
	for _, tc := range []struct {
		flip int64
		lazy []Span
		ok   bool
	}{
		{-1, nil, true},
		{-1, []Span{{0, int64(len(data))}}, true},
		{0, nil, false},
		{P - 1, []Span{{P, 2 * P}}, false},
		{P, []Span{{P, 2 * P}}, true},
		{2*P - 1, []Span{{P, 2 * P}}, true},
		{2*P - 1, []Span{{P, 2*P - 4096}}, false},
		{2 * P, []Span{{P, 2*P + 1}}, false},
		{P + 7, []Span{{0, P + 4096}, {P + 4096, 2 * P}}, true},
		{P + 7, []Span{{0, P + 4096}, {P + 8192, 2 * P}}, false},
		{int64(len(data)) - 1, []Span{{0, 3 * P}}, false},
		{int64(len(data)) - 1, []Span{{3 * P, int64(len(data))}}, true},
	} {
		if tc.flip >= 0 {
			flipByte(t, path, tc.flip)
		}
		err := wait(tc.lazy...)
		if tc.flip >= 0 {
			flipByte(t, path, tc.flip)
		}
		if tc.ok && err != nil {
			t.Errorf("byte %d flipped, lazy %v: %v", tc.flip, tc.lazy, err)
		}
		if !tc.ok {
			requireCRCError(t, err, path)
		}
	}
}

// TestWaitPiecesOldManifest: pages images of a version 1 manifest have
// no piece sums; a lazy restore checks them whole, in the background.
func TestWaitPiecesOldManifest(t *testing.T) {
	dir, _ := checkFixture(t)
	m, err := ReadManifest(openDir(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	body.WriteString(manifestHeaderV1 + "\n")
	for _, f := range m.Files {
		fmt.Fprintf(&body, "%s %d %08x\n", f.Name, f.Size, f.CRC)
	}
	v1 := fmt.Sprintf("%send %d %08x\n", body.String(), len(m.Files), Checksum([]byte(body.String())))
	if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pages-2.img")
	flipByte(t, path, 5)
	c, err := VerifyManifestLazy(openDir(t, dir), IsPagesName)
	if err != nil {
		t.Fatal(err)
	}
	if c.Pieces("pages-2.img") != nil {
		t.Error("piece sums from a version 1 manifest")
	}
	requireCRCError(t, c.WaitPieces(map[string][]Span{"pages-2.img": {{0, 1 << 30}}}), path)
}
