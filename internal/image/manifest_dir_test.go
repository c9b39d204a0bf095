package image_test

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"amber/internal/image"
)

// imagesFixture writes a directory of image files (one a pages image of
// several hashing pieces) and a log, and its manifest.
func imagesFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{
		"inventory.img":    []byte("inventory"),
		"core-7.img":       []byte("core of pid 7"),
		"amber-mtimes.txt": []byte("# times\n"),
		"empty.img":        nil,
		"dump.log":         []byte("not an image"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pages := make([]byte, 40<<20)
	for i := 0; i < len(pages); i += 4093 {
		pages[i] = byte(i)
	}
	if err := os.WriteFile(filepath.Join(dir, "pages-1.img"), pages, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := image.WriteManifest(openAt(t, dir), nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func verify(t *testing.T, dir string) error {
	c, err := image.VerifyManifest(openAt(t, dir), image.IsPagesName)
	if err != nil {
		return err
	}
	return c.Wait()
}

func TestManifestDir(t *testing.T) {
	dir := imagesFixture(t)
	m, err := image.ReadManifest(openAt(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range m.Files {
		names = append(names, f.Name)
	}
	if got := strings.Join(names, " "); got != "amber-mtimes.txt core-7.img empty.img inventory.img pages-1.img" {
		t.Errorf("manifest lists %s", got)
	}
	if err := verify(t, dir); err != nil {
		t.Fatal(err)
	}
	// Files that are no images come and go freely.
	if err := os.WriteFile(filepath.Join(dir, "restore.log"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "dump.log")); err != nil {
		t.Fatal(err)
	}
	if err := verify(t, dir); err != nil {
		t.Errorf("after changing the logs: %v", err)
	}
}

func TestManifestDirNone(t *testing.T) {
	dir := t.TempDir()
	c, err := image.VerifyManifest(openAt(t, dir), image.IsPagesName)
	if c != nil || err != nil {
		t.Fatalf("no manifest: got %v, %v; want nothing to check", c, err)
	}
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestManifestDirDamaged damages each file of the fixture in each way: the
// check must fail naming it, and for all files but the pages image before
// VerifyManifest returns.
func TestManifestDirDamaged(t *testing.T) {
	damages := map[string]func(path string) error{
		"flip": func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil || len(b) == 0 {
				return err
			}
			b[len(b)*2/3] ^= 0x10
			return os.WriteFile(p, b, 0o600)
		},
		"truncate": func(p string) error {
			st, err := os.Stat(p)
			if err != nil {
				return err
			}
			return os.Truncate(p, max(st.Size()-1, 0))
		},
		"append": func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			_, err = f.Write([]byte{0})
			return errors.Join(err, f.Close())
		},
		"delete": os.Remove,
		"symlink": func(p string) error {
			if err := os.Rename(p, p+".orig"); err != nil {
				return err
			}
			return os.Symlink(filepath.Base(p)+".orig", p)
		},
	}
	names := []string{"inventory.img", "core-7.img", "amber-mtimes.txt", "empty.img", "pages-1.img", image.ManifestName}
	for _, name := range names {
		for how, damage := range damages {
			if name == "empty.img" && (how == "flip" || how == "truncate") {
				continue // nothing to change
			}
			if name == image.ManifestName && how == "delete" {
				continue // images without a manifest are not checked
			}
			t.Run(name+"/"+how, func(t *testing.T) {
				dir := imagesFixture(t)
				if err := damage(filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
				c, err := image.VerifyManifest(openAt(t, dir), image.IsPagesName)
				if how == "flip" && name == "pages-1.img" {
					if err != nil {
						t.Fatalf("the pages image was hashed before VerifyManifest returned: %v", err)
					}
					err = c.Wait()
				}
				requireManifestError(t, err, filepath.Join(dir, name))
			})
		}
	}
}

func requireManifestError(t *testing.T, err error, path string) {
	t.Helper()
	var me *image.ManifestError
	if !errors.As(err, &me) || me.Path != path {
		t.Fatalf("got %v; want an error about %s", err, path)
	}
}

// TestManifestDirAdded adds image files after the manifest: the restore
// would read them, so they are refused.
func TestManifestDirAdded(t *testing.T) {
	for _, name := range []string{"pipes-data.img", "amber-other.txt"} {
		dir := imagesFixture(t)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		requireManifestError(t, verify(t, dir), p)
	}
}

// TestManifestDirStop stops a check of a large pages image early.
func TestManifestDirStop(t *testing.T) {
	dir := imagesFixture(t)
	c, err := image.VerifyManifest(openAt(t, dir), image.IsPagesName)
	if err != nil {
		t.Fatal(err)
	}
	c.Stop()
}

// TestWriteManifestKnown: sums computed while writing are taken as they
// are when the file has their size, and recomputed when not.
func TestWriteManifestKnown(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.img"), []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		known image.Sum
		want  uint32
	}{
		{image.Sum{Size: 3, CRC: 0x1234}, 0x1234},
		{image.Sum{Size: 4, CRC: 0x1234}, image.Checksum([]byte("abc"))},
	} {
		if err := image.WriteManifest(openAt(t, dir), map[string]image.ManifestFile{"a.img": {Sum: tc.known}}); err != nil {
			t.Fatal(err)
		}
		m, err := image.ReadManifest(openAt(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Files) != 1 || m.Files[0].CRC != tc.want {
			t.Errorf("known %+v: manifest %+v, want CRC %08x", tc.known, m.Files, tc.want)
		}
	}
}

// TestWriteManifestPieces writes the manifest of a pages image that the
// dump did not hash in pieces: the pieces are hashed, one per PieceSize
// bytes, and a file of another kind gets none.
func TestWriteManifestPieces(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 2*image.PieceSize+4096)
	rand.NewChaCha8([32]byte{1}).Read(data)
	for name, b := range map[string][]byte{"pages-1.img": data, "pages-2.img": nil, "x.img": data} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	known := map[string]image.ManifestFile{"pages-2.img": {Sum: image.Sum{Size: 0, CRC: 0}}}
	if err := image.WriteManifest(openAt(t, dir), known); err != nil {
		t.Fatal(err)
	}
	m, err := image.ReadManifest(openAt(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Files {
		if f.Name != "pages-1.img" {
			if len(f.Pieces) != 0 {
				t.Errorf("%s: %d piece sums, want none", f.Name, len(f.Pieces))
			}
			continue
		}
		if len(f.Pieces) != 3 {
			t.Fatalf("%s: %d piece sums, want 3", f.Name, len(f.Pieces))
		}
		for i, crc := range f.Pieces {
			if w := image.Checksum(data[i*image.PieceSize : min(len(data), (i+1)*image.PieceSize)]); crc != w {
				t.Errorf("piece %d: %08x, want %08x", i, crc, w)
			}
		}
	}
}
