package mem

// Dumping pages to a page server: the same pages a local dump writes,
// sent in address order over one connection instead of written into
// the pagemap and pages images.

import (
	"errors"
	"fmt"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"

	"amber/internal/compel"
	"amber/internal/image"
	"amber/internal/progress"
)

// PageSink receives a process's pages in place of its pagemap and pages
// images (pageserver.Client).
type PageSink interface {
	// OpenTask starts the pages of process pid and reports whether the
	// receiver holds parent images for it.
	OpenTask(pid int) (hasParent bool, err error)
	// Add sends the contents of whole pages at vaddr.
	Add(vaddr uint64, pages []byte) error
	// Hole records nrPages pages at vaddr as left to the parent images.
	Hole(vaddr, nrPages uint64) error
	// Lazy records nrPages pages at vaddr as left at the source, for a
	// lazy restore to fetch (PE_LAZY).
	Lazy(vaddr, nrPages uint64) error
}

// SendPages is DumpPages to a page server: the pages of the frozen task
// t go to sink. Pages are left to the parent images only if the receiver
// has them. Once they are sent, the pagemap of what was sent is written
// to record (with no pages image), for a later dump on top to know what
// its parent holds; with record nil, no dump can come on top (the tree
// does not outlive this one) and none is written. Stats.Sum is left
// zero: the receiver's images are not the dump's to vouch for. With
// lazy, the pages a lazy restore may bring in later are sent as PE_LAZY
// entries without contents, and Stats.Lazy serves them from t while it
// stays frozen, as DumpPages does. With par, the parasite in t, and a
// sink that takes pages from pipes, the pages go without copies
// (splice.go) where t can hand them over.
func SendPages(t *compel.Task, par Parasite, vmas []*vma.VmaEntry, alone []Run, sink PageSink, pid int, inc *Incremental, record *image.Path, lazy bool) (PagesStats, error) {
	var st PagesStats
	p, err := planTask(t, vmas, alone, pid, inc, &st)
	if err != nil {
		return st, err
	}
	hasParent, err := sink.OpenTask(pid)
	if err != nil {
		return st, err
	}
	if inc != nil && !hasParent {
		inc = &Incremental{Markers: inc.Markers}
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
	shared := intersectRuns(p.shared, copied)
	sent, piped, err := sendAll(t, par, sink, copied, gapsOf(parent, left), shared, fmt.Sprintf("dump pid %d", pid))
	st.Pages, st.Piped, st.Runs = sent/pageSize, piped/pageSize, p.runs
	if err != nil || record == nil {
		return st, err
	}
	entries := append(pagemapEntries(copied, parent), lazyEntries(left)...)
	slices.SortFunc(entries, func(a, b *pagemap.PagemapEntry) int { return cmpU64(a.GetVaddr(), b.GetVaddr()) })
	return st, writePagemap(*record, 0, entries)
}

// sendAll sends the copied runs and the gaps through pipes of t's if
// par and sink can (spliceRuns), else by copying them (sendRuns). A task
// whose pipes cannot be made (at its limit of descriptors) is copied.
// It returns how many bytes of pages it sent, and how many of them
// through pipes.
func sendAll(t *compel.Task, par Parasite, sink PageSink, copied []Run, gaps []gap, shared []Run, label string) (sent, piped uint64, err error) {
	ps, ok := sink.(PipeSink)
	if par == nil || !ok || len(copied) == 0 {
		sent, err = sendRuns(t, sink, copied, gaps, shared, label, sendChunkBytes)
		return sent, 0, err
	}
	sp, err := NewTaskPipes(t, par)
	if err != nil {
		sent, err = sendRuns(t, sink, copied, gaps, shared, label, sendChunkBytes)
		return sent, 0, err
	}
	sent, piped, err = spliceRuns(t, sp, ps, copied, gaps, shared, label, pipeBytes)
	return sent, piped, errors.Join(err, sp.Close())
}

// gap is a run of pages sent without contents: left to the parent
// images, or, lazy, left at the source.
type gap struct {
	Run
	lazy bool
}

// gapsOf merges the parent runs and the lazy runs (both sorted) into one
// list of gaps in address order.
func gapsOf(parent, lazy []Run) []gap {
	out := make([]gap, 0, len(parent)+len(lazy))
	for _, r := range parent {
		out = append(out, gap{Run: r})
	}
	for _, r := range lazy {
		out = append(out, gap{Run: r, lazy: true})
	}
	slices.SortFunc(out, func(a, b gap) int { return cmpU64(a.Start, b.Start) })
	return out
}

// planTask plans which pages of t a dump saves, and finds its guard
// pages (Stats.Guards). With inc, the same walks read and re-arm the
// tracking (inc.Track), and set inc.Written and inc.Markers.
func planTask(t *compel.Task, vmas []*vma.VmaEntry, alone []Run, pid int, inc *Incremental, st *PagesStats) (pagePlan, error) {
	scan, err := NewScanner(t.Pid)
	if err != nil {
		return pagePlan{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	defer scan.Close()
	var track *Track
	if inc != nil && len(inc.Tracked) > 0 {
		track = &Track{Tracked: inc.Tracked, Marker: inc.Marker, SoftDirty: inc.SoftDirty}
	}
	p, err := planPages(scan, vmas, alone, track)
	st.Scanned, st.Guards = p.scanned, p.guards
	if err != nil || track == nil {
		return p, err
	}
	inc.Written, inc.Markers = p.written, p.markers
	if track.SoftDirty {
		// Re-armed while the task is still frozen: nothing it writes
		// escapes both this scan and the next.
		err = ClearSoftDirty(t.Pid)
	}
	return p, err
}

// sentChunk is a chunk of runs read from the task, or the error that
// ended reading.
type sentChunk struct {
	runs []Run
	buf  []byte
	err  error
}

// sendBuffers is how many chunks are read ahead of the one being sent:
// reading the task and writing the socket overlap.
const sendBuffers = 3

// sendChunkBytes is how much memory one process_vm_readv reads and one
// hand-off from the reading goroutine to the sending one moves: with
// copyChunk's 128 KiB, a 1 GiB dump woke one of them for every chunk,
// twice as many context switches as with 1 MiB.
const sendChunkBytes = 1 << 20

// sendRuns sends the copied runs' contents and the gaps without them,
// all in address order. One goroutine reads chunks of at most chunk
// bytes from the task while the caller sends the chunk before. It
// returns how many bytes of pages it sent.
func sendRuns(t *compel.Task, sink PageSink, copied []Run, gaps []gap, shared []Run, label string, chunk uint64) (uint64, error) {
	total := runsBytes(copied)
	bar := progress.New(label, total)
	defer bar.Done()
	free := make(chan []byte, sendBuffers)
	for range sendBuffers {
		free <- make([]byte, min(chunk, max(total, pageSize)))
	}
	ready := make(chan sentChunk, sendBuffers)
	stop := make(chan struct{})
	defer close(stop)
	go readChunks(t, copied, shared, chunk, free, ready, stop)
	var off uint64
	for c := range ready {
		if c.err != nil {
			return off, c.err
		}
		var err error
		if gaps, err = sendChunk(sink, c, gaps); err != nil {
			return off, err
		}
		off += uint64(len(c.buf))
		bar.Set(off)
		free <- c.buf[:cap(c.buf)]
	}
	_, err := sendGaps(sink, gaps, ^uint64(0))
	return off, err
}

// readChunks reads the runs from the task size bytes at a time into free
// buffers and hands them on in order, until stop.
func readChunks(t *compel.Task, runs, shared []Run, size uint64, free chan []byte, ready chan<- sentChunk, stop <-chan struct{}) {
	defer close(ready)
	for chunk := range chunks(runs, size) {
		var buf []byte
		select {
		case buf = <-free:
		case <-stop:
			return
		}
		c := sentChunk{runs: slices.Clone(chunk)}
		c.buf = buf[:runsBytes(chunk)]
		c.err = readRuns(t, c.runs, shared, c.buf)
		select {
		case ready <- c:
		case <-stop:
			return
		}
		if c.err != nil {
			return
		}
	}
}

// sendChunk sends the runs of one chunk, each after the gaps (sorted)
// before it, and returns the gaps left: a chunk spans gaps, and the
// pagemap must list the pages in address order.
func sendChunk(sink PageSink, c sentChunk, gaps []gap) ([]gap, error) {
	b := c.buf
	for _, r := range c.runs {
		var err error
		if gaps, err = sendGaps(sink, gaps, r.Start); err != nil {
			return nil, err
		}
		n := r.End - r.Start
		if err := sink.Add(r.Start, b[:n]); err != nil {
			return nil, err
		}
		b = b[n:]
	}
	return gaps, nil
}

// sendGaps sends the gaps (sorted) that start before addr and returns
// the others.
func sendGaps(sink PageSink, gaps []gap, addr uint64) ([]gap, error) {
	for len(gaps) > 0 && gaps[0].Start < addr {
		g := gaps[0]
		send := sink.Hole
		if g.lazy {
			send = sink.Lazy
		}
		if err := send(g.Start, (g.End-g.Start)/pageSize); err != nil {
			return nil, err
		}
		gaps = gaps[1:]
	}
	return gaps, nil
}
