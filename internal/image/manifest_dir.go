package image

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ManifestError is an image file that does not match the manifest, or a
// damaged manifest: Path names the file.
type ManifestError struct {
	Path    string
	Problem string
}

func (e *ManifestError) Error() string { return e.Path + ": " + e.Problem }

// hashBuf is how much of a file one read hashes: small enough that the
// bytes are still in the CPU's cache when the CRC reads them.
const hashBuf = 256 << 10

// hashPiece is how much of a large file one hashing worker takes at a
// time.
const hashPiece = 16 << 20

// IsPagesName tells whether name is a pages image (pages-ID.img): raw
// memory contents, the only images large enough to be worth checking
// while a restore runs rather than before it.
func IsPagesName(name string) bool {
	return strings.HasPrefix(name, "pages-") && strings.HasSuffix(name, ".img")
}

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

// Check is the verification of an images directory against its manifest,
// part of it still running.
type Check struct {
	Manifest *Manifest
	stop     atomic.Bool
	done     chan struct{}
	err      error
}

// pendingFile is a file whose size matched and whose contents are still
// to hash.
type pendingFile struct {
	f    *os.File
	want Sum
}

// VerifyManifest checks the images in dir against their manifest: every
// file it lists must be there, a regular file of its size, and no other
// image file may be. The contents of every file but those later selects
// (none if later is nil) are hashed before it returns; those of the
// others in the background, until Check.Wait. It returns a nil Check if
// dir has no manifest.
func VerifyManifest(dir Dir, later func(name string) bool) (*Check, error) {
	d, err := openImagesDir(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	m, err := d.readManifest()
	if m == nil || err != nil {
		return nil, err
	}
	if err := d.checkListed(m); err != nil {
		return nil, err
	}
	var pending []pendingFile
	defer func() { closeAll(pending) }()
	for _, mf := range m.Files {
		f, err := d.openSized(mf)
		if err != nil {
			return nil, err
		}
		if later != nil && later(mf.Name) {
			pending = append(pending, pendingFile{f, mf.Sum})
			continue
		}
		err = verifyContents(f, mf.Sum, nil, nil)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	c := &Check{Manifest: m, done: make(chan struct{})}
	c.start(pending)
	pending = nil
	return c, nil
}

// checkListed refuses an image file that the manifest does not list.
func (d *imagesDir) checkListed(m *Manifest) error {
	listed := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		listed[f.Name] = true
	}
	names, err := d.imageNames()
	if err != nil {
		return err
	}
	for _, name := range names {
		if !listed[name] {
			return &ManifestError{d.dir.Path(name), "not in " + ManifestName + ": added since the dump"}
		}
	}
	return nil
}

// openSized opens a file of the manifest and checks its size.
func (d *imagesDir) openSized(mf ManifestFile) (*os.File, error) {
	f, err := d.open(mf.Name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &ManifestError{d.dir.Path(mf.Name), "missing, but " + ManifestName + " lists it"}
	}
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && st.Size() != mf.Size {
		err = &ManifestError{f.Name(), fmt.Sprintf("%d bytes, but %s says %d: truncated or extended since the dump",
			st.Size(), ManifestName, mf.Size)}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// verifyContents hashes f and compares it with want.
func verifyContents(f *os.File, want Sum, stop *atomic.Bool, cpus *unix.CPUSet) error {
	got, err := hashFile(f, want.Size, stop, cpus)
	if err != nil {
		return err
	}
	if got.CRC != want.CRC {
		return &ManifestError{f.Name(), fmt.Sprintf("CRC32C %08x, but %s says %08x: damaged since the dump",
			got.CRC, ManifestName, want.CRC)}
	}
	return nil
}

// start hashes the pending files in the background. Its workers run on
// every CPU the caller may use, whatever CPU the thread that later asks
// Go for more threads is bound to (a restore's tracer binds itself to
// one).
func (c *Check) start(pending []pendingFile) {
	var cpus unix.CPUSet
	cpuArg := &cpus
	if unix.SchedGetaffinity(0, &cpus) != nil {
		cpuArg = nil
	}
	go func() {
		defer close(c.done)
		defer closeAll(pending)
		defer bindThread(cpuArg)()
		for _, p := range pending {
			if err := verifyContents(p.f, p.want, &c.stop, cpuArg); err != nil {
				c.err = err
				return
			}
		}
	}()
}

// Wait waits for the background part of the check and returns its
// result. A nil Check (no manifest) has nothing to wait for.
func (c *Check) Wait() error {
	if c == nil {
		return nil
	}
	<-c.done
	return c.err
}

// Stop ends the background part of the check early and waits for it.
func (c *Check) Stop() {
	if c != nil {
		c.stop.Store(true)
		<-c.done
	}
}

func closeAll(files []pendingFile) {
	for _, p := range files {
		p.f.Close()
	}
}

// bindThread makes the calling goroutine run on a thread bound to cpus,
// if not nil, until the returned function is called.
func bindThread(cpus *unix.CPUSet) (unbind func()) {
	if cpus == nil {
		return func() {}
	}
	runtime.LockOSThread()
	unix.SchedSetaffinity(0, cpus)
	return runtime.UnlockOSThread
}

// errStopped is what a hash stopped early returns.
var errStopped = errors.New("check stopped")

// hashFile computes the CRC32C of the first size bytes of f, which must
// have that many: large files in pieces by one worker per CPU (bound to
// cpus, if not nil), until stop, if not nil, is set.
func hashFile(f *os.File, size int64, stop *atomic.Bool, cpus *unix.CPUSet) (Sum, error) {
	pieces := int((size + hashPiece - 1) / hashPiece)
	if pieces <= 1 {
		return hashRange(f, 0, size, make([]byte, min(size, hashBuf)), stop)
	}
	var sums ChunkSums
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, min(runtime.NumCPU(), pieces))
	for w := range errs {
		wg.Go(func() {
			defer bindThread(cpus)()
			buf := make([]byte, hashBuf)
			for i := next.Add(1) - 1; i < int64(pieces) && errs[w] == nil; i = next.Add(1) - 1 {
				off := i * hashPiece
				var s Sum
				s, errs[w] = hashRange(f, off, min(hashPiece, size-off), buf, stop)
				sums.Add(off, s)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return Sum{}, err
	}
	return sums.Sum()
}

// hashRange hashes n bytes of f from off, reading them into buf.
func hashRange(f *os.File, off, n int64, buf []byte, stop *atomic.Bool) (Sum, error) {
	s := Sum{Size: n}
	for done := int64(0); done < n; {
		if stop != nil && stop.Load() {
			return Sum{}, errStopped
		}
		b := buf[:min(n-done, int64(len(buf)))]
		if _, err := f.ReadAt(b, off+done); err != nil {
			return Sum{}, fmt.Errorf("%s: %w", f.Name(), noEOF(err))
		}
		s.CRC = updateChecksum(s.CRC, b)
		done += int64(len(b))
	}
	return s, nil
}
