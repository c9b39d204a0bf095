package mem

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/compel"
	"amber/internal/image"
	"amber/internal/progress"
)

// Pagemap entry flags (criu/include/pagemap.h).
const (
	PEParent  = 1 << 0
	PELazy    = 1 << 1
	PEPresent = 1 << 2
)

// copyChunk is how much memory one process_vm_readv moves: large enough
// to amortise the call, small enough to stay in the CPU's cache between
// the three passes over it (process_vm_readv writes it, the CRC and
// pwrite read it). Measured on a mem512 dump here: 64–128 KiB took half
// the CPU time of 4 MiB, whose passes each went to memory.
const copyChunk = 128 << 10

// maxIov is IOV_MAX.
const maxIov = 1024

// PagesStats counts what DumpPages wrote.
type PagesStats struct {
	Pages   uint64 // pages written to the pages image
	Scanned uint64 // pages in VMAs whose contents are saved
	Runs    []Run  // the pages with data, VMA by VMA (the pagemap joins runs that touch)
	// Piped counts the pages of Pages a dump to a page server sent
	// through pipes, without copying them (splice.go).
	Piped uint64
	// InParent counts the pages left to the parent images (PE_PARENT
	// entries), not written to the pages image.
	InParent uint64
	// Sum is the size and CRC32C of the pages image, computed as it was
	// written, for the manifest, and Pieces the CRC32C of each of its
	// pieces of image.PieceSize bytes.
	Sum    image.Sum
	Pieces []uint32
	// Lazy are the pages left at the source (PE_LAZY entries) of a dump
	// --lazy-pages, nil otherwise.
	Lazy *LazySource
	// Guards are the task's guard pages (MADV_GUARD_INSTALL), which the
	// mm image records after the VMAs (GuardEntries).
	Guards []Run
}

// DumpPages writes the pagemap and pages images of the frozen task t with
// the given VMAs (and alone, the areas MappedAlone found): every present page of private memory, except the zero
// page and file pages never written. With inc (an incremental dump), the
// pages inc leaves to the parent images get PE_PARENT entries instead of
// being copied. With lazy (a dump --lazy-pages), the pages a lazy
// restore may bring in later (CanBeLazy) get PE_LAZY entries instead,
// and Stats.Lazy serves them from t while it stays frozen.
func DumpPages(t *compel.Task, vmas []*vma.VmaEntry, alone []Run, dir image.Dir, pid int, pagesID uint32, inc *Incremental, lazy bool) (PagesStats, error) {
	var st PagesStats
	p, err := planTask(t, vmas, alone, pid, inc, &st)
	if err != nil {
		return st, err
	}
	copied, parent := inc.splitParent(p.merged)
	for _, r := range parent {
		st.InParent += (r.End - r.Start) / pageSize
	}
	var left []Run
	if lazy {
		copied, left = splitLazyRuns(copied, vmas)
		st.Lazy = &LazySource{task: t, runs: left, shared: intersectRuns(p.shared, left)}
	}
	entries := append(pagemapEntries(copied, parent), lazyEntries(left)...)
	slices.SortFunc(entries, func(a, b *pagemap.PagemapEntry) int { return cmpU64(a.GetVaddr(), b.GetVaddr()) })
	if err := writePagemap(dir.PagemapPath(pid), pagesID, entries); err != nil {
		return st, err
	}
	shared := intersectRuns(p.shared, copied)
	sums, err := copyPages(t, copied, shared, dir.PagesPath(pagesID), fmt.Sprintf("dump pid %d", pid))
	st.Pages, st.Runs, st.Sum, st.Pieces = uint64(sums.Size)/pageSize, p.runs, sums.Sum, sums.Pieces
	return st, err
}

// pagePlan is what a dump saves of a task's private memory.
type pagePlan struct {
	runs    []Run  // the pages with data, VMA by VMA
	merged  []Run  // runs joined where they touch: the pagemap entries
	shared  []Run  // the pages of merged that other processes map too
	guards  []Run  // guard pages, which hold no data
	scanned uint64 // pages in the VMAs whose contents are saved
	// written and markers are, with a Track, the pages of the tracked
	// VMAs written since the last scan (protected again now) and the
	// uffd-wp markers there.
	written, markers []Run
}

// planPages finds which pages of vmas a dump saves, which of those other
// processes map too (none in alone, see MappedAlone), and the guard
// pages of every VMA; with track, also which pages of the tracked VMAs
// were written since the last scan, protecting them again, and their
// markers, in the same walks.
func planPages(scan *Scanner, vmas []*vma.VmaEntry, alone []Run, track *Track) (pagePlan, error) {
	var p pagePlan
	var found dataScan
	for _, g := range adjacent(vmas, savedAtDump) {
		for _, v := range g {
			p.scanned += (v.GetEnd() - v.GetStart()) / pageSize
		}
		if err := scan.scanData(g, track, &found); err != nil {
			return p, err
		}
	}
	p.runs, p.guards, p.written, p.markers = found.data, found.guards, found.written, found.markers
	for _, g := range adjacent(vmas, withoutContents) {
		guards, err := scan.GuardRuns(g)
		if err != nil {
			return p, err
		}
		p.guards = append(p.guards, guards...)
	}
	slices.SortFunc(p.guards, func(a, b Run) int { return cmpU64(a.Start, b.Start) })
	p.guards = mergeRuns(p.guards)
	// Runs that continue across a VMA boundary become one pagemap entry
	// (CRIU's restore, like amber's, walks an entry across VMAs): a
	// restore reads one entry instead of one per VMA (10,000 one-page
	// VMAs of data make one entry, not 10,000).
	p.merged = mergeRuns(p.runs)
	var err error
	p.shared, err = scan.Shared(p.merged, alone)
	return p, err
}

// adjacent groups the VMAs whose status is kept into runs of adjacent
// ones, which one scan each covers: the VMAs whose contents are dumped
// (a mapping in between whose pages are not the task's, shared memory,
// is not walked for data), or the others (walked for guard pages only).
func adjacent(vmas []*vma.VmaEntry, keep func(v *vma.VmaEntry) bool) [][]*vma.VmaEntry {
	var out [][]*vma.VmaEntry
	for i, v := range vmas {
		if !keep(v) {
			continue
		}
		if n := len(out); n > 0 && i > 0 && keep(vmas[i-1]) && vmas[i-1].GetEnd() == v.GetStart() {
			out[n-1] = append(out[n-1], v)
			continue
		}
		out = append(out, []*vma.VmaEntry{v})
	}
	return out
}

func withoutContents(v *vma.VmaEntry) bool { return !savedAtDump(v) }

// savedAtDump reports whether a dump saves the pages of VMA v: those a
// restore writes (HasContents), and the [vdso] code, as CRIU saves it:
// CRIU's restore reads the dumped vdso's symbols from the pages image to
// decide whether this kernel's vdso may take its place. amber's restore
// puts this kernel's vdso there and writes none of them.
// A MAP_DROPPABLE mapping's pages are not saved, as CRIU does not save
// them: the kernel may drop them any time (they read back as zeroes), so
// its owner keeps nothing there it cannot make again.
func savedAtDump(v *vma.VmaEntry) bool {
	if v.GetFlags()&unix.MAP_DROPPABLE != 0 {
		return false
	}
	return HasContents(v.GetStatus()) || v.GetStatus()&StatusVdso != 0
}

// mergeRuns joins sorted runs that touch into one.
func mergeRuns(runs []Run) []Run {
	var out []Run
	for _, r := range runs {
		out = appendRun(out, r)
	}
	return out
}

const pageSize = 4096

func writePagemap(path image.Path, pagesID uint32, entries []*pagemap.PagemapEntry) error {
	w, err := image.Create(path, image.Pagemap)
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Write(&pagemap.PagemapHead{PagesId: proto.Uint32(pagesID)}); err != nil {
		return err
	}
	for _, e := range entries {
		if err := w.Write(e); err != nil {
			return err
		}
	}
	return w.Close()
}

// pagemapEntry is the pagemap entry of the pages of r, with flags.
func pagemapEntry(r Run, flags uint32) *pagemap.PagemapEntry {
	n := (r.End - r.Start) / pageSize
	return &pagemap.PagemapEntry{
		Vaddr:         proto.Uint64(r.Start),
		CompatNrPages: proto.Uint32(uint32(n)),
		NrPages:       proto.Uint64(n),
		Flags:         proto.Uint32(flags),
	}
}

// copyPages copies the runs' contents into the pages image, in chunks
// that several workers read and write at their own offsets at once: a
// dump runs at the speed the page cache takes new pages, and that scales
// with CPUs. Pages in shared (sorted) are read without pinning them. The
// workers hash what they copy; copyPages returns the size and CRC32C of
// the image and of each of its pieces.
func copyPages(t *compel.Task, runs, shared []Run, path image.Path, label string) (image.ManifestFile, error) {
	f, err := path.Create()
	if err != nil {
		return image.ManifestFile{}, err
	}
	defer f.Close()
	total := runsBytes(runs)
	// Reserving the blocks first spares each write the filesystem's
	// delayed allocation; where it is not supported, writes allocate.
	unix.Fallocate(int(f.Fd()), 0, 0, int64(total))
	bar := progress.New(label, total)
	defer bar.Done()
	sums, err := copyRuns(t, f, runs, shared, bar, total, copyChunk)
	if err != nil {
		return image.ManifestFile{}, err
	}
	if err := f.Close(); err != nil {
		return image.ManifestFile{}, err
	}
	return sums, nil
}

// copyRuns copies the runs, total bytes, into f chunk bytes at a time and
// returns the sums of what it wrote: the whole's and each piece's.
func copyRuns(t *compel.Task, f *os.File, runs, shared []Run, bar *progress.Bar, total, chunk uint64) (image.ManifestFile, error) {
	sums := new(image.ChunkSums)
	var err error
	if workers := copyWorkers(total, chunk); workers == 1 {
		// Handing a small copy to a goroutine costs more than the copy:
		// the caller is locked to its thread (ptrace), and every hand-off
		// between threads wakes one.
		err = copyAlone(t, f, runs, shared, bar, total, chunk, sums)
	} else {
		err = copyParallel(t, f, runs, shared, bar, workers, chunk, sums)
	}
	if err != nil {
		return image.ManifestFile{}, err
	}
	whole, err := sums.Sum()
	if err != nil {
		return image.ManifestFile{}, err
	}
	pieces, err := sums.Pieces()
	return image.ManifestFile{Sum: whole, Pieces: pieces}, err
}

// copyParallel copies the runs chunk by chunk with workers goroutines,
// which take the chunks in turn from a list made first. The caller is
// locked to its thread (ptrace): handing it thousands of chunks through a
// channel put that thread to sleep and woke it for each (8,192 times for
// 1 GiB), a tenth of a dump's CPU time in futex calls.
func copyParallel(t *compel.Task, f *os.File, runs, shared []Run, bar *progress.Bar, workers int, chunk uint64, sums *image.ChunkSums) error {
	jobs := copyJobs(runs, chunk)
	var next, done atomic.Uint64
	var failed atomic.Bool
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			buf := make([]byte, chunk)
			for i := next.Add(1) - 1; i < uint64(len(jobs)) && !failed.Load(); i = next.Add(1) - 1 {
				if err := copyChunkAt(t, f, jobs[i], shared, buf, sums); err != nil {
					errs[w] = err
					failed.Store(true)
					return
				}
				bar.Set(done.Add(jobs[i].size))
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// copyJobs cuts the runs into chunks and gives each its offset in the
// pages image.
func copyJobs(runs []Run, chunk uint64) []copyJob {
	var jobs []copyJob
	var off uint64
	for runs := range chunks(runs, chunk) {
		job := copyJob{runs: slices.Clone(runs), off: off}
		for _, r := range runs {
			job.size += r.End - r.Start
		}
		jobs = append(jobs, job)
		off += job.size
	}
	return jobs
}

// copyAlone copies the runs chunk by chunk in the calling goroutine.
func copyAlone(t *compel.Task, f *os.File, runs, shared []Run, bar *progress.Bar, total, chunk uint64, sums *image.ChunkSums) error {
	buf := make([]byte, min(chunk, total))
	var off uint64
	for runs := range chunks(runs, chunk) {
		job := copyJob{runs: runs, off: off}
		for _, r := range runs {
			job.size += r.End - r.Start
		}
		if err := copyChunkAt(t, f, job, shared, buf, sums); err != nil {
			return err
		}
		off += job.size
		bar.Set(off)
	}
	return nil
}

// copyJob is one chunk of runs and its offset in the pages image.
type copyJob struct {
	runs      []Run
	off, size uint64
}

// copyWorkers is how many chunks are copied at once.
func copyWorkers(total, chunk uint64) int {
	if total < 2*chunk {
		return 1
	}
	return min(runtime.NumCPU(), 4)
}

// copyChunkAt copies one chunk and adds its checksum to sums.
func copyChunkAt(t *compel.Task, f *os.File, job copyJob, shared []Run, buf []byte, sums *image.ChunkSums) error {
	b := buf[:job.size]
	if err := readRuns(t, job.runs, shared, b); err != nil {
		return err
	}
	sums.AddPieces(int64(job.off), b)
	if _, err := f.WriteAt(b, int64(job.off)); err != nil {
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	return nil
}

// chunks splits runs into groups of at most size bytes and maxIov ranges,
// cutting runs where needed.
func chunks(runs []Run, size uint64) func(yield func([]Run) bool) {
	return func(yield func([]Run) bool) {
		var cur []Run
		var n uint64
		for _, r := range runs {
			for r.Start < r.End {
				take := min(r.End-r.Start, size-n)
				cur = append(cur, Run{r.Start, r.Start + take})
				n += take
				r.Start += take
				if n == size || len(cur) == maxIov {
					if !yield(cur) {
						return
					}
					cur, n = cur[:0], 0
				}
			}
		}
		if len(cur) > 0 {
			yield(cur)
		}
	}
}

// piece is part of a run and where it goes in the copy buffer.
type piece struct {
	Run
	buf []byte
}

// readRuns reads the runs into buf: pages the task maps alone with one
// process_vm_readv, shared ones and whatever that cannot read (PROT_NONE)
// through /proc/PID/mem.
func readRuns(t *compel.Task, runs, shared []Run, buf []byte) error {
	var pinned, unpinned []piece
	off := uint64(0)
	for _, r := range runs {
		for _, part := range splitRun(r, shared) {
			p := piece{part.Run, buf[off+part.Start-r.Start : off+part.End-r.Start]}
			if part.shared {
				unpinned = append(unpinned, p)
			} else {
				pinned = append(pinned, p)
			}
		}
		off += r.End - r.Start
	}
	remote := make([]unix.RemoteIovec, len(pinned))
	local := make([][]byte, len(pinned))
	for i, p := range pinned {
		remote[i] = unix.RemoteIovec{Base: uintptr(p.Start), Len: int(p.End - p.Start)}
		local[i] = p.buf
	}
	done, err := t.ReadVecs(remote, local)
	if err != nil {
		done = 0
	}
	for _, p := range pinned {
		l := int(p.End - p.Start)
		if done >= l {
			done -= l
			continue
		}
		unpinned = append(unpinned, piece{Run{p.Start + uint64(done), p.End}, p.buf[done:]})
		done = 0
	}
	for _, p := range unpinned {
		if err := t.ReadProcMem(p.Start, p.buf); err != nil {
			return err
		}
	}
	return nil
}

// part is a piece of a run, shared or not.
type part struct {
	Run
	shared bool
}

// splitRun cuts r where it enters and leaves the shared runs.
func splitRun(r Run, shared []Run) []part {
	var out []part
	for _, s := range sharedIn(r, shared) {
		if s.Start > r.Start {
			out = append(out, part{Run{r.Start, s.Start}, false})
		}
		out = append(out, part{s, true})
		r.Start = s.End
	}
	if r.Start < r.End {
		out = append(out, part{r, false})
	}
	return out
}

// sharedIn returns the parts of shared (sorted) inside r.
func sharedIn(r Run, shared []Run) []Run {
	i, _ := slices.BinarySearchFunc(shared, r.Start, func(s Run, a uint64) int { return cmpU64(s.End, a+1) })
	var out []Run
	for ; i < len(shared) && shared[i].Start < r.End; i++ {
		out = append(out, Run{max(shared[i].Start, r.Start), min(shared[i].End, r.End)})
	}
	return out
}
