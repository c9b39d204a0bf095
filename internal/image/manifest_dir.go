package image

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"golang.org/x/sys/unix"
)

// ManifestError is an image file that does not match the manifest, or a
// damaged manifest: Path names the file.
type ManifestError struct {
	Path    string
	Problem string
}

func (e *ManifestError) Error() string { return e.Path + ": " + e.Problem }

// openImage opens file name of d for reading, as Path.Open does; a
// symbolic link is refused as a ManifestError naming it.
func openImage(d Dir, name string) (*os.File, error) {
	p := d.File(name)
	f, err := p.openByName()
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
		return nil, &ManifestError{p.String(), "a symbolic link, not an image the dump wrote"}
	}
	return f, err
}

// imageNames lists the files of d the manifest covers.
func imageNames(d Dir) ([]string, error) {
	names, err := d.Names()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if IsImageName(n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// WriteManifest writes the manifest of every image file in dir, at the
// end of a dump. The sums of known files (by name; a pages image's with
// its piece sums), and of those written through dir by image.Writer or
// Path.WriteFile, were computed as they were written; the others are
// read back (from the page cache) and hashed.
func WriteManifest(dir Dir, known map[string]ManifestFile) error {
	names, err := imageNames(dir)
	if err != nil {
		return err
	}
	written := map[string]ManifestFile{}
	for name, s := range dir.contents.writtenSums() {
		written[name] = ManifestFile{Sum: s}
	}
	for name, f := range known {
		written[name] = f
	}
	m := &Manifest{}
	for _, name := range names {
		f, err := sumOf(dir, name, written[name])
		if err != nil {
			return err
		}
		f.Name = name
		m.Files = append(m.Files, f)
	}
	return dir.File(ManifestName).WriteFile(m.Marshal())
}

// sumOf is the size and CRC32C of file name, and a pages image's piece
// sums: known, if its size matches (and it has them), else hashed now.
func sumOf(d Dir, name string, known ManifestFile) (ManifestFile, error) {
	pages := IsPagesName(name)
	if known.Sum != (Sum{}) && (!pages || len(known.Pieces) == PieceCount(known.Size)) {
		// A stat, not an open, to see that the file is as written.
		if st, err := d.File(name).Stat(); err == nil && st.Size() == known.Size {
			return known, nil
		}
	}
	f, err := openImage(d, name)
	if err != nil {
		return ManifestFile{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ManifestFile{}, err
	}
	sums, err := hashFile(f, st.Size())
	if err != nil {
		return ManifestFile{}, err
	}
	out := ManifestFile{}
	if out.Sum, err = sums.Sum(); err == nil && pages {
		out.Pieces, err = sums.Pieces()
	}
	return out, err
}

// ReadManifest reads the manifest of dir; nil if the directory has none.
func ReadManifest(dir Dir) (*Manifest, error) {
	f, err := openImage(dir, ManifestName)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifest+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxManifest {
		return nil, &ManifestError{f.Name(), fmt.Sprintf("larger than %d bytes", maxManifest)}
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, &ManifestError{f.Name(), err.Error()}
	}
	return m, nil
}

// maxManifest bounds the manifest's size: a line a file, and a dump of a
// thousand threads has a few thousand files.
const maxManifest = 64 << 20
