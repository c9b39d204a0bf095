package mem

import (
	"fmt"
	"os"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/compel"
	"amber/internal/image"
)

// Pagemap entry flags (criu/include/pagemap.h).
const (
	PEParent  = 1 << 0
	PELazy    = 1 << 1
	PEPresent = 1 << 2
)

// copyChunk is how much memory one process_vm_readv moves: large enough
// to amortise the call, small enough to keep amber's own memory small.
const copyChunk = 4 << 20

// maxIov is IOV_MAX.
const maxIov = 1024

// PagesStats counts what DumpPages wrote.
type PagesStats struct {
	Pages   uint64 // pages written to the pages image
	Scanned uint64 // pages in VMAs whose contents are saved
}

// DumpPages writes the pagemap and pages images of the frozen task t with
// the given VMAs: every present page of private memory, except the zero
// page and file pages never written.
func DumpPages(t *compel.Task, vmas []*vma.VmaEntry, dir image.Dir, pid int, pagesID uint32) (PagesStats, error) {
	var st PagesStats
	scan, err := NewScanner(t.Pid)
	if err != nil {
		return st, fmt.Errorf("pid %d: %w", pid, err)
	}
	defer scan.Close()
	var runs []Run
	for _, v := range vmas {
		if !HasContents(v.GetStatus()) {
			continue
		}
		st.Scanned += (v.GetEnd() - v.GetStart()) / pageSize
		r, err := scan.DataPages(v.GetStart(), v.GetEnd(), v.GetStatus()&StatusFilePrivate != 0)
		if err != nil {
			return st, err
		}
		runs = append(runs, r...)
	}
	if err := writePagemap(dir.PagemapPath(pid), pagesID, runs); err != nil {
		return st, err
	}
	n, err := copyPages(t, runs, dir.PagesPath(pagesID))
	st.Pages = n
	return st, err
}

const pageSize = 4096

func writePagemap(path string, pagesID uint32, runs []Run) error {
	w, err := image.Create(path, image.Pagemap)
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Write(&pagemap.PagemapHead{PagesId: proto.Uint32(pagesID)}); err != nil {
		return err
	}
	for _, r := range runs {
		n := (r.End - r.Start) / pageSize
		e := &pagemap.PagemapEntry{
			Vaddr:         proto.Uint64(r.Start),
			CompatNrPages: proto.Uint32(uint32(n)),
			NrPages:       proto.Uint64(n),
			Flags:         proto.Uint32(PEPresent),
		}
		if err := w.Write(e); err != nil {
			return err
		}
	}
	return w.Close()
}

// copyPages streams the runs' contents into the pages image in chunks.
func copyPages(t *compel.Task, runs []Run, path string) (uint64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, copyChunk)
	var pages uint64
	for chunk := range chunks(runs, copyChunk) {
		n := 0
		for _, r := range chunk {
			n += int(r.End - r.Start)
		}
		if err := readRuns(t, chunk, buf[:n]); err != nil {
			return pages, err
		}
		if _, err := f.Write(buf[:n]); err != nil {
			return pages, fmt.Errorf("%s: %w", path, err)
		}
		pages += uint64(n) / pageSize
	}
	return pages, f.Close()
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

// readRuns reads the runs into buf with one process_vm_readv, and range by
// range through /proc/PID/mem where that stops short (PROT_NONE memory).
func readRuns(t *compel.Task, runs []Run, buf []byte) error {
	iov := make([]unix.RemoteIovec, len(runs))
	for i, r := range runs {
		iov[i] = unix.RemoteIovec{Base: uintptr(r.Start), Len: int(r.End - r.Start)}
	}
	done, err := t.ReadVec(iov, buf)
	if err != nil {
		done = 0
	}
	off := 0
	for _, r := range runs {
		l := int(r.End - r.Start)
		if off+l > done {
			from := max(off, done)
			if err := t.ReadMem(r.Start+uint64(from-off), buf[from:off+l]); err != nil {
				return err
			}
		}
		off += l
	}
	return nil
}
