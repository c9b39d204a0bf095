package image

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Files are hashed in pieces of hashPiece bytes, which workers take one
// at a time from a queue (hashQueue): each reads its piece with pread
// into a buffer of its own and hashes it, and ChunkSums joins the pieces
// of a file. A queue of small pieces rather than one contiguous share per
// worker, so that a worker whose CPU is busy with something else (the
// restore, another process) does not hold up the end, and so that more
// workers can join a hash under way (Check.Wait).

// hashBuf is how much of a file one read hashes: small enough that the
// bytes are still in the CPU's cache when the CRC reads them.
const hashBuf = 256 << 10

// hashPiece is how much of a large file one hashing worker takes at a
// time.
const hashPiece = 16 << 20

// errStopped is what a hash stopped early returns.
var errStopped = errors.New("check stopped")

// hashedFile is one file of a hashQueue.
type hashedFile struct {
	f *os.File
	// want.Size is how many bytes of f are hashed; want.CRC is what they
	// must hash to, if the queue verifies.
	want Sum
	sums ChunkSums
	left atomic.Int64 // pieces not hashed yet
}

// hashPart is one piece of a file of a hashQueue.
type hashPart struct {
	file   int // index in hashQueue.files
	off, n int64
	// check: the piece must hash to want (a piece of a manifest's piece
	// sums), whatever the queue does with the whole file.
	check bool
	want  uint32
}

// hashQueue hands out the pieces of files to hash to any number of
// workers (work), in the order of the files.
type hashQueue struct {
	files  []*hashedFile
	parts  []hashPart
	next   atomic.Int64 // index of the next part to hand out
	stop   atomic.Bool  // set on the first failure, or by Check.Stop
	verify bool         // compare each file with its want
	bufLen int          // what a worker's buffer needs
	mu     sync.Mutex
	errs   []error // by file, the first failure of each; under mu
}

// newHashQueue cuts files into pieces of at most piece bytes; every file
// has one piece at least, so that an empty file is verified too.
func newHashQueue(files []pendingFile, piece int64, verify bool) *hashQueue {
	q := &hashQueue{verify: verify, errs: make([]error, len(files))}
	for i, pf := range files {
		hf := &hashedFile{f: pf.f, want: pf.want}
		off := int64(0)
		for {
			n := min(piece, pf.want.Size-off)
			q.parts = append(q.parts, hashPart{file: i, off: off, n: n})
			hf.left.Add(1)
			q.bufLen = max(q.bufLen, int(min(n, hashBuf)))
			if off += n; off >= pf.want.Size {
				break
			}
		}
		q.files = append(q.files, hf)
	}
	return q
}

// work hashes the pieces of the queue into buf (at least bufLen bytes)
// until none is left or the queue is stopped. When it hashes the last
// piece of a file of a verifying queue, it compares the file with what
// it should be.
func (q *hashQueue) work(buf []byte) {
	for !q.stop.Load() {
		i := q.next.Add(1) - 1
		if i >= int64(len(q.parts)) {
			return
		}
		p := q.parts[i]
		hf := q.files[p.file]
		s, err := hashRange(hf.f, p.off, p.n, buf, &q.stop)
		if err == nil && p.check && s.CRC != p.want {
			err = &ManifestError{hf.f.Name(), fmt.Sprintf("the %d bytes at %d: CRC32C %08x, but %s says %08x: damaged since the dump",
				p.n, p.off, s.CRC, ManifestName, p.want)}
		}
		if err == nil {
			hf.sums.Add(p.off, s)
			if hf.left.Add(-1) == 0 && q.verify {
				err = hf.verify()
			}
		}
		if err != nil {
			q.fail(p.file, err)
			return
		}
	}
}

// fail records the failure of file i and stops the queue.
func (q *hashQueue) fail(i int, err error) {
	if errors.Is(err, errStopped) {
		return
	}
	q.mu.Lock()
	if q.errs[i] == nil {
		q.errs[i] = err
	}
	q.mu.Unlock()
	q.stop.Store(true)
}

// err is the result of the queue once its workers are done: the failure
// of the first file (in the queue's order) that failed, else errStopped
// if it was stopped (a piece may be cut short), else nil: every piece
// was hashed.
func (q *hashQueue) err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, err := range q.errs {
		if err != nil {
			return err
		}
	}
	if q.stop.Load() {
		return errStopped
	}
	return nil
}

// run hashes the queue with up to workers workers, the caller one of
// them, and returns its result.
func (q *hashQueue) run(workers int) error {
	var wg sync.WaitGroup
	for range min(workers, len(q.parts)) - 1 {
		wg.Go(func() { q.work(make([]byte, q.bufLen)) })
	}
	q.work(make([]byte, q.bufLen))
	wg.Wait()
	return q.err()
}

// verify compares the file, whose every piece is hashed, with want.
func (hf *hashedFile) verify() error {
	got, err := hf.sums.Sum()
	if err != nil {
		return fmt.Errorf("%s: %w", hf.f.Name(), err)
	}
	if got.CRC != hf.want.CRC {
		return &ManifestError{hf.f.Name(), fmt.Sprintf("CRC32C %08x, but %s says %08x: damaged since the dump",
			got.CRC, ManifestName, hf.want.CRC)}
	}
	return nil
}

// hashFile hashes the first size bytes of f, which must have that many,
// with one worker per CPU, the caller one of them, in pieces of
// PieceSize: the sums give the whole's CRC32C and each piece's.
func hashFile(f *os.File, size int64) (*ChunkSums, error) {
	q := newHashQueue([]pendingFile{{f, Sum{Size: size}}}, PieceSize, false)
	if err := q.run(runtime.NumCPU()); err != nil {
		return nil, err
	}
	return &q.files[0].sums, nil
}

// verifyContents compares f with want, hashed with one worker per CPU.
func verifyContents(f *os.File, want Sum) error {
	return newHashQueue([]pendingFile{{f, want}}, hashPiece, true).run(runtime.NumCPU())
}

// hashRange hashes n bytes of f from off, reading them into buf.
func hashRange(f *os.File, off, n int64, buf []byte, stop *atomic.Bool) (Sum, error) {
	s := Sum{Size: n}
	for done := int64(0); done < n; {
		if stop.Load() {
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

// hashWorkers is how many workers the background check of a restore
// starts with, on cpus (nil: every CPU): one CPU fewer, at least one,
// since the restore runs meanwhile and the restored tasks fill their
// memory from the same images, and a worker on each of the 2 CPUs took
// CPU time from the fill (a 512 MiB restore took 5% longer). Once the
// restore waits for the check, its CPU is free: Check.Wait brings the
// workers up to allWorkers.
func hashWorkers(cpus *unix.CPUSet) int { return max(1, allWorkers(cpus)-1) }

// allWorkers is one worker per CPU of cpus (nil: every CPU).
func allWorkers(cpus *unix.CPUSet) int {
	if cpus == nil {
		return runtime.NumCPU()
	}
	return cpus.Count()
}
