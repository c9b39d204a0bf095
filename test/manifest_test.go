package test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"amber/internal/image"
)

// TestRestoreDamagedImages dumps a program, then damages one file of its
// images at a time, in each way (a byte flipped, the last byte cut, a
// byte appended, the file deleted): every restore must fail naming the
// file and leave no process behind; so must one with the file's line
// taken out of the manifest. The images of the pages, whose check
// runs while memory is filled, are damaged like the others. Last, the
// undamaged images restore and the program passes: with the manifest and
// a file of the user's beside it, or with the manifest deleted (images
// without one restore unchecked, as CRIU's).
func TestRestoreDamagedImages(t *testing.T) {
	for _, tc := range []struct {
		name         string
		dropManifest bool
	}{
		{"counter", false},
		{"pipe_read", true},
		{"ipc_combo", false},
	} {
		t.Run(tc.name, func(t *testing.T) { testDamagedImages(t, tc.name, tc.dropManifest) })
	}
}

// damages are the ways an image file is damaged; each returns false if
// it cannot damage the file that way (an empty file has no byte to flip).
var damages = []struct {
	name string
	do   func(path string) (bool, error)
}{
	{"flip", func(p string) (bool, error) {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			return false, err
		}
		b[len(b)/2] ^= 0x01
		return true, os.WriteFile(p, b, 0o600)
	}},
	{"truncate", func(p string) (bool, error) {
		st, err := os.Stat(p)
		if err != nil || st.Size() == 0 {
			return false, err
		}
		return true, os.Truncate(p, st.Size()-1)
	}},
	{"append", func(p string) (bool, error) {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return false, err
		}
		_, err = f.Write([]byte{0})
		return true, errors.Join(err, f.Close())
	}},
	{"delete", func(p string) (bool, error) { return true, os.Remove(p) }},
	{"unlist", unlist},
}

// unlist rewrites the manifest without the line of file p, with a valid
// end line: the restore must not read an image the manifest lacks.
func unlist(p string) (bool, error) {
	name := filepath.Base(p)
	if name == image.ManifestName {
		return false, nil
	}
	dir, err := image.OpenDir(filepath.Dir(p))
	if err != nil {
		return false, err
	}
	defer dir.Close()
	m, err := image.ReadManifest(dir)
	if m == nil || err != nil {
		return false, err
	}
	m.Files = slices.DeleteFunc(m.Files, func(f image.ManifestFile) bool { return f.Name == name })
	return true, dir.File(image.ManifestName).WriteFile(m.Marshal())
}

func testDamagedImages(t *testing.T, name string, dropManifest bool) {
	c := startCase(t, name)
	c.mustDump()
	pristine := t.TempDir()
	names := copyImages(t, c.images, pristine)
	if !slices.Contains(names, image.ManifestName) {
		t.Fatalf("the dump wrote no %s: %v", image.ManifestName, names)
	}
	for _, file := range names {
		for _, d := range damages {
			if file == image.ManifestName && d.name == "delete" {
				continue // the last restore, below
			}
			copyImages(t, pristine, c.images)
			changed, err := d.do(filepath.Join(c.images, file))
			if err != nil {
				t.Fatal(err)
			}
			if !changed {
				continue
			}
			r := c.restoreDetached(c.pidfile())
			if r.err == nil {
				t.Fatalf("%s %s: restore succeeded; want an error naming it", d.name, file)
			}
			requireFailure(t, r, file)
			requireNothingLeft(t, d.name+" "+file)
		}
	}
	copyImages(t, pristine, c.images)
	if dropManifest {
		c.dropManifest()
	} else if err := os.WriteFile(filepath.Join(c.images, "notes.txt"), []byte("mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.mustRestoreDetached()
	c.mustPass()
}

// copyImages makes dst hold the image files of src and nothing else (a
// failed restore's log goes), and returns their names: those the
// manifest covers, and the manifest.
func copyImages(t *testing.T, src, dst string) []string {
	t.Helper()
	old, err := os.ReadDir(dst)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range old {
		if err := os.Remove(filepath.Join(dst, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if !image.IsImageName(e.Name()) && e.Name() != image.ManifestName {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
		names = append(names, e.Name())
	}
	return names
}

// dropManifest deletes the manifest of the dump, for tests of what the
// restore itself makes of bad images (such as CRIU's, which have none):
// with it, the manifest check would refuse them first.
func (c *zcase) dropManifest() {
	c.t.Helper()
	if err := os.Remove(filepath.Join(c.images, image.ManifestName)); err != nil {
		c.t.Fatal(err)
	}
}

// requireNothingLeft requires that no process of this test runs: whatever
// a failed restore left would have come to this subreaper. (Programs of
// the same name that other tests on the machine run are not ours.)
func requireNothingLeft(t *testing.T, what string) {
	t.Helper()
	for _, pid := range descendants(os.Getpid()) {
		if alive(pid) {
			st, _ := readStat(pid)
			t.Fatalf("%s: the failed restore left pid %d (%s)", what, pid, st.Comm)
		}
	}
}

// TestRestoreDamagedLargePages dumps lazy_mem (some 70 MiB of memory,
// whose pages image is checked in several pieces at once, each 16 MiB)
// and flips one byte of the pages image at a time: in the first piece,
// either side of the boundary between the first two, in the middle, the
// last. Every restore must fail naming the pages image and its CRC32C,
// and leave no process behind. (A lazy restore checks only the pieces
// it reads itself, and the lazy-pages daemon the others:
// TestLazyDamagedPages.) Then the undamaged images restore and the
// program passes.
func TestRestoreDamagedLargePages(t *testing.T) {
	const piece = 16 << 20
	c := startCase(t, "lazy_mem")
	c.mustDump()
	pristine := t.TempDir()
	copyImages(t, c.images, pristine)
	name, size := onePagesImage(t, pristine)
	if size < 4*piece {
		t.Fatalf("%s: %d bytes; want several pieces of %d", name, size, piece)
	}
	for _, off := range []int64{4096, piece - 1, piece, size / 2, size - 1} {
		copyImages(t, pristine, c.images)
		flipByteAt(t, filepath.Join(c.images, name), off)
		requireFailure(t, c.restoreDetached(c.pidfile()), name+": CRC32C")
		requireNothingLeft(t, fmt.Sprintf("byte %d of %s flipped", off, name))
	}
	copyImages(t, pristine, c.images)
	c.mustRestoreDetached()
	c.mustPass()
}

// onePagesImage returns the name and size of the one pages image in
// dir.
func onePagesImage(t *testing.T, dir string) (string, int64) {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(dir, "pages-*.img"))
	if err != nil || len(pages) != 1 {
		t.Fatalf("pages images in %s: %v, %v; want one", dir, pages, err)
	}
	st, err := os.Stat(pages[0])
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(pages[0]), st.Size()
}

// flipByteAt flips the lowest bit of byte off of the file at path.
func flipByteAt(t *testing.T, path string, off int64) {
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

// TestRestoreDamagedParentPages pre-dumps predump_writer, dumps it on
// top, and flips a byte of the pre-dump's pages image, which holds most
// of the chain's pages and which the restore checks in the background
// while memory is filled, as the tree's own: in its middle, then its
// last. Every restore must fail naming it and leave no process behind.
// Then the undamaged chain restores and the program passes.
func TestRestoreDamagedParentPages(t *testing.T) {
	c := startCase(t, "predump_writer")
	c.mustPreDump("pre1", "")
	c.mustDumpOntoWith("../pre1", nil)
	pre1 := filepath.Join(c.dir, "pre1")
	pristine := t.TempDir()
	copyImages(t, pre1, pristine)
	name, size := onePagesImage(t, pristine)
	for _, off := range []int64{size / 2, size - 1} {
		copyImages(t, pristine, pre1)
		flipByteAt(t, filepath.Join(pre1, name), off)
		requireFailure(t, c.restoreDetached(c.pidfile()), filepath.Join("pre1", name)+": CRC32C")
		requireNothingLeft(t, fmt.Sprintf("byte %d of pre1/%s flipped", off, name))
	}
	copyImages(t, pristine, pre1)
	c.mustRestoreDetached()
	c.mustPass()
}
