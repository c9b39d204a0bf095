package mem

// Dumping pages to a page server: the same pages a local dump writes,
// sent in address order over one connection instead of written into
// the pagemap and pages images.

import (
	"fmt"
	"slices"

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
}

// SendPages is DumpPages to a page server: the pages of the frozen task
// t go to sink. Pages are left to the parent images only if the receiver
// has them. Once they are sent, the pagemap of what was sent is written
// to record (with no pages image), for a later dump on top to know what
// its parent holds. Stats.Sum is left zero: the receiver's images are not
// the dump's to vouch for.
func SendPages(t *compel.Task, vmas []*vma.VmaEntry, sink PageSink, pid int, inc *Incremental, record image.Path) (PagesStats, error) {
	var st PagesStats
	p, err := planTask(t, vmas, pid, &st)
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
	shared := intersectRuns(p.shared, copied)
	sent, err := sendRuns(t, sink, copied, parent, shared, fmt.Sprintf("dump pid %d", pid))
	st.Pages, st.Runs = sent/pageSize, p.runs
	if err != nil {
		return st, err
	}
	return st, writePagemap(record, 0, pagemapEntries(copied, parent))
}

// planTask plans which pages of t a dump saves, refusing guard pages.
func planTask(t *compel.Task, vmas []*vma.VmaEntry, pid int, st *PagesStats) (pagePlan, error) {
	scan, err := NewScanner(t.Pid)
	if err != nil {
		return pagePlan{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	defer scan.Close()
	p, err := planPages(scan, vmas)
	st.Scanned = p.scanned
	if err != nil {
		return p, err
	}
	if len(p.guards) > 0 {
		return p, guardsError(p.guards)
	}
	return p, nil
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

// sendRuns sends the copied runs' contents and the parent runs as holes,
// all in address order. One goroutine reads chunks from the task while
// the caller sends the chunk before. It returns how many bytes of pages
// it sent.
func sendRuns(t *compel.Task, sink PageSink, copied, parent, shared []Run, label string) (uint64, error) {
	var total uint64
	for _, r := range copied {
		total += r.End - r.Start
	}
	bar := progress.New(label, total)
	defer bar.Done()
	free := make(chan []byte, sendBuffers)
	for range sendBuffers {
		free <- make([]byte, min(copyChunk, max(total, pageSize)))
	}
	ready := make(chan sentChunk, sendBuffers)
	stop := make(chan struct{})
	defer close(stop)
	go readChunks(t, copied, shared, free, ready, stop)
	var off uint64
	for c := range ready {
		if c.err != nil {
			return off, c.err
		}
		var err error
		if parent, err = sendChunk(sink, c, parent); err != nil {
			return off, err
		}
		off += uint64(len(c.buf))
		bar.Set(off)
		free <- c.buf[:cap(c.buf)]
	}
	_, err := sendHoles(sink, parent, ^uint64(0))
	return off, err
}

// readChunks reads the runs from the task chunk by chunk into free
// buffers and hands them on in order, until stop.
func readChunks(t *compel.Task, runs, shared []Run, free chan []byte, ready chan<- sentChunk, stop <-chan struct{}) {
	defer close(ready)
	for chunk := range chunks(runs, copyChunk) {
		var buf []byte
		select {
		case buf = <-free:
		case <-stop:
			return
		}
		c := sentChunk{runs: slices.Clone(chunk)}
		var size uint64
		for _, r := range chunk {
			size += r.End - r.Start
		}
		c.buf = buf[:size]
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

// sendChunk sends the runs of one chunk, each after the parent runs
// (sorted) before it, and returns the parent runs left: a chunk spans
// holes, and the pagemap must list the pages in address order.
func sendChunk(sink PageSink, c sentChunk, parent []Run) ([]Run, error) {
	b := c.buf
	for _, r := range c.runs {
		var err error
		if parent, err = sendHoles(sink, parent, r.Start); err != nil {
			return nil, err
		}
		n := r.End - r.Start
		if err := sink.Add(r.Start, b[:n]); err != nil {
			return nil, err
		}
		b = b[n:]
	}
	return parent, nil
}

// sendHoles sends the parent runs (sorted) that start before addr and
// returns the others.
func sendHoles(sink PageSink, parent []Run, addr uint64) ([]Run, error) {
	for len(parent) > 0 && parent[0].Start < addr {
		if err := sink.Hole(parent[0].Start, (parent[0].End-parent[0].Start)/pageSize); err != nil {
			return nil, err
		}
		parent = parent[1:]
	}
	return parent, nil
}
