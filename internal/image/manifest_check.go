package image

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

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
	files    []pendingFile // hashed in the background, closed when done
	// held are files with piece sums that a lazy restore checks only in
	// part (WaitPieces), closed by WaitPieces or Stop.
	held []heldFile
	// pieces are the piece sums of the held files, by name.
	pieces map[string][]uint32
	queue  *hashQueue    // their pieces
	cpus   *unix.CPUSet  // what the workers run on; nil: any CPU
	done   chan struct{} // closed once the last worker is done
	err    error         // the result, set before done is closed

	mu      sync.Mutex
	running int  // workers running
	ended   bool // the last worker is done: no more may start
	helped  bool // Wait added its workers
}

// pendingFile is a file whose size matched and whose contents are still
// to hash.
type pendingFile struct {
	f    *os.File
	want Sum
}

// heldFile is a file of a check that hashes only some of its pieces.
type heldFile struct {
	pendingFile
	ManifestFile
}

// VerifyManifest checks the images in dir against their manifest: every
// file it lists must be there, a regular file of its size, and no other
// image file may be. The contents of every file but those later selects
// (none if later is nil) are hashed before it returns; those of the
// others in the background, until Check.Wait. It returns a nil Check if
// dir has no manifest.
func VerifyManifest(dir Dir, later func(name string) bool) (*Check, error) {
	return verifyManifest(dir, later, false, hashPiece)
}

// VerifyManifestLazy is VerifyManifest for a lazy restore: of the files
// later selects, those with piece sums (pages images of a version 2
// manifest) are not hashed in the background but held for WaitPieces,
// which hashes only the pieces the restore reads; the lazy-pages daemon
// checks the others (Check.Pieces) before it places a page from them.
func VerifyManifestLazy(dir Dir, later func(name string) bool) (*Check, error) {
	return verifyManifest(dir, later, true, hashPiece)
}

// verifyManifest is VerifyManifest hashing the files checked later in
// pieces of at most piece bytes, or with hold, VerifyManifestLazy.
func verifyManifest(dir Dir, later func(name string) bool, hold bool, piece int64) (*Check, error) {
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
	var held []heldFile
	defer func() {
		closeAll(pending)
		closeHeld(held)
	}()
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
		switch {
		case later != nil && later(mf.Name) && hold && mf.Pieces != nil:
			held = append(held, heldFile{pendingFile{f, mf.Sum}, mf})
			continue
		case later != nil && later(mf.Name):
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
	c := &Check{Manifest: m, done: make(chan struct{}), held: held, pieces: map[string][]uint32{}}
	for _, h := range held {
		c.pieces[h.Name] = h.Pieces
	}
	c.start(pending, piece)
	pending, held = nil, nil
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
		return verifyContents(f, mf.Sum)
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

// start hashes the pending files in the background, in pieces of at
// most piece bytes. Its workers run on every CPU the caller may use,
// whatever CPU the thread that later asks Go for more threads is bound
// to (a restore's tracer binds itself to one).
func (c *Check) start(pending []pendingFile, piece int64) {
	var cpus unix.CPUSet
	if unix.SchedGetaffinity(0, &cpus) == nil {
		c.cpus = &cpus
	}
	c.files = pending
	c.queue = newHashQueue(pending, piece, true)
	c.addWorkers(hashWorkers(c.cpus))
}

// addWorkers starts n more workers on the queue, unless it is done.
func (c *Check) addWorkers(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.running += n
	for range n {
		go c.worker()
	}
}

// worker hashes pieces of the queue until none is left; the last worker
// to end gives the result.
func (c *Check) worker() {
	unbind := bindThread(c.cpus)
	c.queue.work(make([]byte, c.queue.bufLen))
	unbind()
	c.mu.Lock()
	c.running--
	c.ended = c.running == 0
	last := c.ended
	c.mu.Unlock()
	if last {
		c.err = c.queue.err()
		closeAll(c.files)
		close(c.done)
	}
}

// Wait waits for the background part of the check and returns its
// result. Meanwhile the caller's CPU is free: a worker per CPU hashes
// what is left. A nil Check (no manifest) has nothing to wait for.
func (c *Check) Wait() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	help := !c.helped
	c.helped = true
	c.mu.Unlock()
	if help {
		c.addWorkers(allWorkers(c.cpus) - hashWorkers(c.cpus))
	}
	<-c.done
	return c.err
}

// Stop ends the background part of the check early and waits for it.
func (c *Check) Stop() {
	if c != nil {
		c.queue.stop.Store(true)
		<-c.done
		c.closeHeld()
	}
}

// Pieces are the piece sums of file name of the directory if the check
// holds it (VerifyManifestLazy): whoever reads the pieces of it that
// WaitPieces does not check must check them. Nil if the restore checks
// the whole file, or no manifest lists it.
func (c *Check) Pieces(name string) []uint32 {
	if c == nil {
		return nil
	}
	return c.pieces[name]
}

// Span is a run of bytes of a file, from Off to End.
type Span struct{ Off, End int64 }

// WaitPieces checks the pieces of the held files (VerifyManifestLazy)
// that the restore read: every piece but those wholly inside the spans
// of lazy (by file name, sorted, not overlapping), which the lazy-pages
// daemon checks itself. Then it waits for the rest of the check, as
// Wait.
func (c *Check) WaitPieces(lazy map[string][]Span) error {
	if c == nil {
		return nil
	}
	q := &hashQueue{errs: make([]error, len(c.held))}
	for i, h := range c.held {
		q.files = append(q.files, &hashedFile{f: h.f, want: h.want})
		for p, crc := range h.Pieces {
			off := int64(p) * PieceSize
			part := hashPart{file: i, off: off, n: min(PieceSize, h.Size-off), check: true, want: crc}
			if !covered(lazy[h.Name], part.off, part.off+part.n) {
				q.parts = append(q.parts, part)
				q.bufLen = max(q.bufLen, int(min(part.n, hashBuf)))
			}
		}
	}
	err := q.run(allWorkers(c.cpus))
	c.closeHeld()
	if err != nil {
		return err
	}
	return c.Wait()
}

// covered tells whether spans (sorted, not overlapping) cover [off, end).
func covered(spans []Span, off, end int64) bool {
	i, _ := slices.BinarySearchFunc(spans, off, func(s Span, at int64) int { return cmp.Compare(s.End, at+1) })
	for ; i < len(spans) && spans[i].Off <= off && off < end; i++ {
		off = spans[i].End
	}
	return off >= end
}

func (c *Check) closeHeld() {
	c.mu.Lock()
	held := c.held
	c.held = nil
	c.mu.Unlock()
	closeHeld(held)
}

func closeHeld(held []heldFile) {
	for _, h := range held {
		h.f.Close()
	}
}

func closeAll(files []pendingFile) {
	for _, p := range files {
		p.f.Close()
	}
}
