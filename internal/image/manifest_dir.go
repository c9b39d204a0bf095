package image

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// ManifestError is an image file that does not match the manifest, or a
// damaged manifest: Path names the file.
type ManifestError struct {
	Path    string
	Problem string
}

func (e *ManifestError) Error() string { return e.Path + ": " + e.Problem }

// imagesDir is an images directory opened to read its files by name
// without following symbolic links.
type imagesDir struct {
	dir Dir
	f   *os.File
}

func openImagesDir(dir Dir) (*imagesDir, error) {
	fd, err := unix.Open(string(dir), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("images directory %s: %w", dir, err)
	}
	return &imagesDir{dir: dir, f: os.NewFile(uintptr(fd), string(dir))}, nil
}

func (d *imagesDir) Close() error { return d.f.Close() }

// open opens the regular file name of the directory for reading.
func (d *imagesDir) open(name string) (*os.File, error) {
	fd, err := unix.Openat(int(d.f.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, &ManifestError{d.dir.Path(name), "a symbolic link, not an image the dump wrote"}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: d.dir.Path(name), Err: err}
	}
	f := os.NewFile(uintptr(fd), d.dir.Path(name))
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = &ManifestError{f.Name(), fmt.Sprintf("a %v, not an image the dump wrote", st.Mode().Type())}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// imageNames lists the files of the directory the manifest covers.
func (d *imagesDir) imageNames() ([]string, error) {
	if _, err := d.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	ents, err := d.f.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("images directory %s: %w", d.dir, err)
	}
	var out []string
	for _, e := range ents {
		if IsImageName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// WriteManifest writes the manifest of every image file in dir, at the
// end of a dump. The sums of known files were computed as they were
// written; the others are read back (from the page cache) and hashed.
func WriteManifest(dir Dir, known map[string]Sum) error {
	d, err := openImagesDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	names, err := d.imageNames()
	if err != nil {
		return err
	}
	m := &Manifest{}
	for _, name := range names {
		s, err := d.sum(name, known[name])
		if err != nil {
			return err
		}
		m.Files = append(m.Files, ManifestFile{name, s})
	}
	return d.replace(ManifestName, m.Marshal())
}

// sum is the size and CRC32C of file name: known, if its size matches,
// else hashed now.
func (d *imagesDir) sum(name string, known Sum) (Sum, error) {
	f, err := d.open(name)
	if err != nil {
		return Sum{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Sum{}, err
	}
	if known.Size == st.Size() && known != (Sum{}) {
		return known, nil
	}
	return hashFile(f, st.Size(), nil, nil)
}

// replace writes a new file name with contents b in place of any old one,
// created afresh so that nothing planted at its name is written through.
func (d *imagesDir) replace(name string, b []byte) error {
	path := d.dir.Path(name)
	if err := unix.Unlinkat(int(d.f.Fd()), name, 0); err != nil && err != unix.ENOENT {
		return &os.PathError{Op: "unlink", Path: path, Err: err}
	}
	fd, err := unix.Openat(int(d.f.Fd()), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	_, werr := f.Write(b)
	return errors.Join(werr, f.Close())
}

// ReadManifest reads the manifest of dir; nil if the directory has none.
func ReadManifest(dir Dir) (*Manifest, error) {
	d, err := openImagesDir(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.readManifest()
}

func (d *imagesDir) readManifest() (*Manifest, error) {
	f, err := d.open(ManifestName)
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
