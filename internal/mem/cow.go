package mem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/proc"
)

// A child shares, copy-on-write, the pages it has not written since it
// was forked. Dump finds them by their page frame: as root,
// /proc/PID/pagemap shows the same frame at the same address in parent
// and child. They are listed in cow-PID.img, amber's own file in CRIU's
// pagemap format (every entry PE_PARENT: "the parent has this page");
// CRIU ignores it, and the pages stay in the child's pages image too, so
// CRIU can still restore the images. Restore forks the child from its
// restored parent and does not write these pages again, so they stay
// shared.

// Pagemap entry bits of /proc/PID/pagemap.
const (
	pmPresent = 1 << 63
	pmPfnMask = 1<<55 - 1
)

// CowPath is cow-PID.img.
func CowPath(dir image.Dir, pid int) image.Path { return dir.File(fmt.Sprintf("cow-%d.img", pid)) }

// SameVMA reports whether a child's VMA is the one it inherited from its
// parent unchanged: same range, protection, flags and backing file.
func SameVMA(a, b *vma.VmaEntry) bool {
	return a.GetStart() == b.GetStart() && a.GetEnd() == b.GetEnd() && a.GetProt() == b.GetProt() &&
		a.GetFlags() == b.GetFlags() && a.GetStatus() == b.GetStatus() &&
		a.GetShmid() == b.GetShmid() && a.GetPgoff() == b.GetPgoff()
}

// CowRuns returns the pages among the child's data runs that are the
// parent's very pages, in VMAs both have unchanged.
func CowRuns(parentPid, childPid int, parentVMAs, childVMAs []*vma.VmaEntry, runs []Run) ([]Run, error) {
	pf, err := proc.Open(fmt.Sprintf("/proc/%d/pagemap", parentPid))
	if err != nil {
		return nil, err
	}
	defer pf.Close()
	cf, err := proc.Open(fmt.Sprintf("/proc/%d/pagemap", childPid))
	if err != nil {
		return nil, err
	}
	defer cf.Close()
	same := map[uint64]bool{}
	parent := map[uint64]*vma.VmaEntry{}
	for _, v := range parentVMAs {
		parent[v.GetStart()] = v
	}
	for _, v := range childVMAs {
		if p, ok := parent[v.GetStart()]; ok && SameVMA(p, v) && HasContents(v.GetStatus()) {
			same[v.GetStart()] = true
		}
	}
	var out []Run
	var pb, cb []byte
	for _, r := range runs {
		i := findVMA(childVMAs, r.Start)
		if i >= len(childVMAs) || !same[childVMAs[i].GetStart()] {
			continue
		}
		pb, cb = growPagemapBuf(pb, (r.End-r.Start)/pageSize), growPagemapBuf(cb, (r.End-r.Start)/pageSize)
		shared, err := sharedFrames(pf, cf, r, pb, cb)
		if err != nil {
			return nil, err
		}
		for _, s := range shared {
			out = appendRun(out, s)
		}
	}
	return out, nil
}

// sharedFrames compares the frames of r in both pagemaps, a chunk of
// pages at a time.
func sharedFrames(pf, cf *os.File, r Run, pb, cb []byte) ([]Run, error) {
	var out []Run
	for at := r.Start; at+pageSize <= r.End; {
		n := min((r.End-at)/pageSize, uint64(len(pb)/8))
		if err := readFrames(pf, at, pb[:n*8]); err != nil {
			return nil, err
		}
		if err := readFrames(cf, at, cb[:n*8]); err != nil {
			return nil, err
		}
		for i := uint64(0); i < n; i++ {
			p := binary.LittleEndian.Uint64(pb[i*8:])
			c := binary.LittleEndian.Uint64(cb[i*8:])
			if p&pmPresent != 0 && c&pmPresent != 0 && p&pmPfnMask != 0 && p&pmPfnMask == c&pmPfnMask {
				a := at + i*pageSize
				out = appendRun(out, Run{a, a + pageSize})
			}
		}
		at += n * pageSize
	}
	return out, nil
}

// readFrames reads the pagemap entries of the len(b)/8 pages from addr;
// past the end of the address space they read as not present.
func readFrames(f *os.File, addr uint64, b []byte) error {
	n, err := f.ReadAt(b, int64(addr/pageSize*8))
	if errors.Is(err, io.EOF) {
		clear(b[n:])
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s at %#x: %w", f.Name(), addr, err)
	}
	return nil
}

// WriteCow writes cow-PID.img.
func WriteCow(dir image.Dir, pid int, runs []Run) error {
	entries := []proto.Message{&pagemap.PagemapHead{PagesId: proto.Uint32(0)}}
	for _, r := range runs {
		n := (r.End - r.Start) / pageSize
		entries = append(entries, &pagemap.PagemapEntry{
			Vaddr: proto.Uint64(r.Start), CompatNrPages: proto.Uint32(uint32(n)),
			NrPages: proto.Uint64(n), Flags: proto.Uint32(PEParent),
		})
	}
	return image.WriteFile(CowPath(dir, pid), image.Pagemap, entries...)
}

// ReadCow reads cow-PID.img; images without it (CRIU's, or a root task)
// have no pages known to be shared.
func ReadCow(dir image.Dir, pid int) ([]Run, error) {
	path := CowPath(dir, pid)
	_, entries, err := ReadPagemap(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var runs []Run
	for _, e := range entries {
		r := Run{e.GetVaddr(), e.GetVaddr() + NrPages(e)*pageSize}
		if r.End <= r.Start || (len(runs) > 0 && r.Start < runs[len(runs)-1].End) {
			return nil, fmt.Errorf("%s: entries must be non-empty and sorted (vaddr %#x)", path, r.Start)
		}
		runs = append(runs, r)
	}
	return runs, nil
}

// ReadPagemap reads a pagemap image: its head, then its entries.
func ReadPagemap(p image.Path) (*pagemap.PagemapHead, []*pagemap.PagemapEntry, error) {
	f, err := p.OpenContents()
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	path := p.String()
	r, err := image.NewReader(f, path, image.Pagemap)
	if err != nil {
		return nil, nil, err
	}
	head := new(pagemap.PagemapHead)
	if err := r.Next(head); err != nil {
		return nil, nil, fmt.Errorf("%s: head: %w", path, noEOF(err))
	}
	var entries []*pagemap.PagemapEntry
	var slab pagemapSlab
	for {
		err := r.NextDecoded(func(b []byte) error {
			e, err := slab.decodeEntry(b)
			if err == nil {
				entries = append(entries, e)
			}
			return err
		})
		if err == io.EOF {
			return head, entries, nil
		}
		if err != nil {
			return nil, nil, err
		}
	}
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
