package image

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// IsPagesName tells whether name is a pages image (pages-ID.img): raw
// memory contents, the only images large enough to be worth checking
// while a restore runs rather than before it.
func IsPagesName(name string) bool {
	return strings.HasPrefix(name, "pages-") && strings.HasSuffix(name, ".img")
}

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
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	if m == nil && dir.trust.isShared() {
		return nil, dir.trust.unverified(dir.String(), "has no "+ManifestName)
	}
	if m == nil {
		return nil, nil
	}
	if err := checkListed(dir, m); err != nil {
		return nil, err
	}
	var pending []pendingFile
	defer func() { closeAll(pending) }()
	for _, mf := range m.Files {
		f, err := openSized(dir, mf)
		if err == nil && dir.trust.isShared() {
			err = dir.contents.pin(mf.Name, f)
			if err != nil {
				f.Close()
			}
		}
		if err != nil {
			return nil, err
		}
		if later != nil && later(mf.Name) {
			pending = append(pending, pendingFile{f, mf.Sum})
			continue
		}
		err = verifyKept(dir, f, mf)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	if dir.trust.isShared() {
		dir.contents.setVerified()
	}
	c := &Check{Manifest: m, done: make(chan struct{})}
	c.start(pending)
	pending = nil
	return c, nil
}

// checkListed refuses an image file that the manifest does not list.
func checkListed(d Dir, m *Manifest) error {
	listed := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		listed[f.Name] = true
	}
	names, err := imageNames(d)
	if err != nil {
		return err
	}
	for _, name := range names {
		if !listed[name] {
			return &ManifestError{d.File(name).String(), "not in " + ManifestName + ": added since the dump"}
		}
	}
	return nil
}

// openSized opens a file of the manifest and checks its size.
func openSized(d Dir, mf ManifestFile) (*os.File, error) {
	f, err := openImage(d, mf.Name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &ManifestError{d.File(mf.Name).String(), "missing, but " + ManifestName + " lists it"}
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

// maxKept is the largest image whose verified bytes the directory keeps
// for the restore to read: images of entries are small, pages and ghost
// files go by.
const maxKept = 16 << 20

// verifyKept verifies f, file mf of the manifest; a small one is read
// whole, and what was verified is what the restore reads (no second read,
// nor a change in between).
func verifyKept(d Dir, f *os.File, mf ManifestFile) error {
	if mf.Size > maxKept {
		return verifyContents(f, mf.Sum, nil, nil, nil)
	}
	b := make([]byte, mf.Size)
	if _, err := io.ReadFull(f, b); err != nil {
		return &ManifestError{f.Name(), fmt.Sprintf("read: %v", err)}
	}
	if got := Checksum(b); got != mf.CRC {
		return &ManifestError{f.Name(), fmt.Sprintf("CRC32C %08x, but %s says %08x: damaged since the dump",
			got, ManifestName, mf.CRC)}
	}
	d.contents.keepVerified(mf.Name, b)
	return nil
}

// verifyContents hashes f and compares it with want.
func verifyContents(f *os.File, want Sum, stop *atomic.Bool, cpus *unix.CPUSet, buf []byte) error {
	got, err := hashFile(f, want.Size, stop, cpus, buf)
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
		buf := make([]byte, hashBuf)
		for _, p := range pending {
			if err := verifyContents(p.f, p.want, &c.stop, cpuArg, buf); err != nil {
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
