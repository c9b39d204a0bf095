package mem

// Filling memory from the pages image: which pages, in which preadv
// calls, run by how many threads of the task.

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/image"
	"amber/internal/plan"
)

// filledVMAs marks the VMAs that fill segments write into.
func filledVMAs(vmas []*vma.VmaEntry, segs []segment) []bool {
	filled := make([]bool, len(vmas))
	for _, sg := range segs {
		i := findVMA(vmas, sg.addr)
		for ; i < len(vmas) && vmas[i].GetStart() < sg.addr+sg.size; i++ {
			filled[i] = true
		}
	}
	return filled
}

// segment is a range of task memory filled from a pages image.
type segment struct {
	addr, size, off uint64 // off: offset in the pages image
	// src is the pages image: 0 the task's own, i the one of its i-th
	// parent images (RestoreInput.Parents[i-1]).
	src int
}

// fillSegments lists what the pages images must write into the task:
// every page of the pagemap, from its own pages image or, for entries
// left to the parent images (PE_PARENT), from theirs, except those the
// task keeps from its parent process (cow runs inside kept VMAs) and
// those of the vdso block. CRIU saves the [vdso] pages; the restored
// task gets this kernel's, moved into place (planVdso).
func fillSegments(in *RestoreInput, keep []bool) ([]segment, error) {
	skip := append(keptCow(in, keep), vdsoRuns(in.MM.GetVmas())...)
	slices.SortFunc(skip, func(a, b Run) int { return cmpU64(a.Start, b.Start) })
	chain := newChain(in.Parents)
	var segs []segment
	var off uint64
	for _, e := range in.Pagemap {
		r := Run{e.GetVaddr(), e.GetVaddr() + NrPages(e)*pageSize}
		from := len(segs)
		// CRIU flags pages that a lazy restore could leave out PE_LAZY
		// beside PE_PRESENT: present, they are in the image all the same.
		switch {
		case e.GetFlags()&PEPresent != 0:
			segs = append(segs, segment{r.Start, r.End - r.Start, off, 0})
			off += r.End - r.Start
		case e.GetFlags()&PELazy != 0 && in.Lazy != nil:
			segs = append(segs, segment{r.Start, r.End - r.Start, 0, remoteSrc})
		case e.GetFlags()&PELazy != 0:
			return nil, fmt.Errorf("%s: pagemap entry %#x: pages left at the source's page server (PE_LAZY): restore with --lazy-pages", in.Pages.Path, e.GetVaddr())
		case e.GetFlags()&PEParent != 0 || e.GetInParent():
			var err error
			if segs, err = chain.resolve(segs, r, 0); err != nil {
				return nil, fmt.Errorf("%s: pagemap entry %#x: %w", in.Pages.Path, e.GetVaddr(), err)
			}
		}
		if len(skip) > 0 {
			segs = append(segs[:from], skipped(segs[from:], skip)...)
		}
	}
	return segs, nil
}

// skipped returns segs without the pages of skip (sorted).
func skipped(segs []segment, skip []Run) []segment {
	out := make([]segment, 0, len(segs))
	for _, sg := range segs {
		r := Run{sg.addr, sg.addr + sg.size}
		if !touchesRuns(r, skip) {
			out = append(out, sg)
			continue
		}
		for _, part := range subtract(r, skip) {
			out = append(out, segment{part.Start, part.End - part.Start, sg.off + part.Start - sg.addr, sg.src})
		}
	}
	return out
}

// touchesRuns tells whether r shares a page with one of runs (sorted).
func touchesRuns(r Run, runs []Run) bool {
	i, _ := slices.BinarySearchFunc(runs, r.Start, func(s Run, a uint64) int { return cmpU64(s.End, a+1) })
	return i < len(runs) && runs[i].Start < r.End
}

// vdsoRuns are the ranges of the dumped vdso block's VMAs.
func vdsoRuns(vmas []*vma.VmaEntry) []Run {
	var out []Run
	for _, v := range vmas {
		if isVdso(v) {
			out = append(out, Run{v.GetStart(), v.GetEnd()})
		}
	}
	return out
}

// keptCow is the task's cow runs that lie in VMAs it keeps: the only
// pages whose inherited contents are already right.
func keptCow(in *RestoreInput, keep []bool) []Run {
	var out []Run
	vmas := in.MM.GetVmas()
	// The parent's lazy pages were not in when the task was forked: the
	// task's own come lazily too.
	lazy := lazyVMAs(in)
	for _, c := range in.Cow {
		for i := findVMA(vmas, c.Start); i < len(vmas) && vmas[i].GetStart() < c.End; i++ {
			if keep[i] && !lazy[i] {
				out = append(out, Run{max(c.Start, vmas[i].GetStart()), min(c.End, vmas[i].GetEnd())})
			}
		}
	}
	return out
}

// subtract returns the parts of r that no run of skip (sorted) covers.
func subtract(r Run, skip []Run) []Run {
	var out []Run
	at := r.Start
	i, _ := slices.BinarySearchFunc(skip, r.Start, func(s Run, a uint64) int { return cmpU64(s.End, a+1) })
	for ; i < len(skip) && skip[i].Start < r.End; i++ {
		if skip[i].Start > at {
			out = append(out, Run{at, skip[i].Start})
		}
		at = max(at, skip[i].End)
	}
	if at < r.End {
		out = append(out, Run{at, r.End})
	}
	return out
}

// planZeroes drops, in kept VMAs, the pages the parent has but the task
// had not: fork gave it the parent's, the dumped task had none there.
func planZeroes(b *plan.Builder, in *RestoreInput, keep []bool) {
	if in.Parent == nil {
		return
	}
	mine := ParentRuns(in.Pagemap)
	vmas := in.MM.GetVmas()
	for _, r := range ParentRuns(in.Parent.Pagemap) {
		for i := findVMA(vmas, r.Start); i < len(vmas) && vmas[i].GetStart() < r.End; i++ {
			if !keep[i] || !HasContents(vmas[i].GetStatus()) {
				continue // shared memory is the object's: never dropped
			}
			part := Run{max(r.Start, vmas[i].GetStart()), min(r.End, vmas[i].GetEnd())}
			for _, z := range subtract(part, mine) {
				b.Call("drop pages the parent has", unix.SYS_MADVISE, z.Start, z.End-z.Start, unix.MADV_DONTNEED)
			}
		}
	}
}

// maxRW is MAX_RW_COUNT, the most one read moves: a longer preadv
// silently stops short.
const maxRW = 0x7ffff000

// splitSegments cuts segments longer than limit (page aligned).
func splitSegments(segs []segment, limit uint64) []segment {
	limit &^= pageSize - 1
	var out []segment
	for _, sg := range segs {
		for sg.size > limit {
			out = append(out, segment{sg.addr, limit, sg.off, sg.src})
			sg = segment{sg.addr + limit, sg.size - limit, sg.off + limit, sg.src}
		}
		out = append(out, sg)
	}
	return out
}

// Sections of the memory plan: the fill runs in FillSection(0..n-1),
// each by its own thread of the task at the same time, between the
// section the plan was in and SectionAfterFill, where PlanRestore leaves
// the builder.
const SectionAfterFill = "after fill"

// FillSection names the part of the fill that worker i runs.
func FillSection(i int) string { return fmt.Sprintf("fill %d", i) }

// parallelFillMin is the least memory worth a second filling thread:
// below it, creating the thread costs more than it saves.
const parallelFillMin = 8 << 20

// planFill plans the preadv calls that copy the pages images into place:
// IOV_MAX ranges per call, each call reading one contiguous part of one
// image, shared out between workers filling sections (one when there is
// little to fill).
func planFill(b *plan.Builder, in *RestoreInput, segs []segment, workers int) {
	var total uint64
	for _, sg := range segs {
		total += sg.size
	}
	if workers < 1 || total < parallelFillMin {
		workers = 1
	}
	images := append([]image.TaskFile{in.Pages}, parentPages(in.Parents)...)
	fds := make([]int, len(images))
	for i := range fds {
		fds[i] = -1
	}
	for _, sg := range segs {
		if fds[sg.src] < 0 {
			fds[sg.src] = b.Open("pages image", images[sg.src].Path, images[sg.src].Flags, 0)
		}
	}
	limit := uint64(maxRW)
	if workers > 1 {
		limit = max(4<<20, total/uint64(workers*8))
	}
	batches := fillBatches(splitSegments(segs, limit), limit)
	load := make([]uint64, workers)
	assigned := make([][]fillBatch, workers)
	for _, bt := range batches {
		w := slices.Index(load, slices.Min(load))
		assigned[w] = append(assigned[w], bt)
		load[w] += bt.size
	}
	for w := range workers {
		b.StartSection(FillSection(w))
		for _, bt := range assigned[w] {
			if in.Populate {
				planPopulate(b, bt.iov)
			}
			b.Call("fill from "+images[bt.src].Path, unix.SYS_PREADV, uint64(fds[bt.src]), b.Bytes(bt.iov), uint64(len(bt.iov)/16), bt.off, 0)
		}
	}
	b.StartSection(SectionAfterFill)
	for _, fd := range fds {
		if fd >= 0 {
			b.Close(fd)
		}
	}
}

// planPopulate plans faulting in, ahead of a preadv, the memory its
// iovecs write: one MADV_POPULATE_WRITE for each run of adjacent ranges.
// The preadv then copies into pages that are there. Left to the copy,
// each page is a fault taken inside preadv, an exception per page, which
// costs more than the copy itself on a virtual machine (a 512 MiB fill
// took 1.5 s of CPU time where populating first took 0.9 s). The pages
// populated are exactly those the preadv writes, so nothing else of the
// task changes.
func planPopulate(b *plan.Builder, iov []byte) {
	var run Run
	for i := 0; i < len(iov); i += 16 {
		addr := binary.LittleEndian.Uint64(iov[i:])
		size := binary.LittleEndian.Uint64(iov[i+8:])
		if run.End != addr && run.End > run.Start {
			b.Call("fault in what the fill writes", unix.SYS_MADVISE, run.Start, run.End-run.Start, unix.MADV_POPULATE_WRITE)
			run = Run{}
		}
		if run.End == run.Start {
			run.Start = addr
		}
		run.End = addr + size
	}
	if run.End > run.Start {
		b.Call("fault in what the fill writes", unix.SYS_MADVISE, run.Start, run.End-run.Start, unix.MADV_POPULATE_WRITE)
	}
}

// parentPages are the pages images of the parent layers, nearest first.
func parentPages(layers []PagesLayer) []image.TaskFile {
	out := make([]image.TaskFile, len(layers))
	for i, l := range layers {
		out[i] = l.Pages
	}
	return out
}

// fillBatch is one preadv: its iovecs, where it reads in the image and
// how much.
type fillBatch struct {
	iov       []byte
	off, size uint64
	src       int // the pages image (segment.src)
}

// fillBatches groups segments into preadv calls: contiguous in the image,
// at most IOV_MAX ranges and limit bytes each.
func fillBatches(segs []segment, limit uint64) []fillBatch {
	var out []fillBatch
	var cur fillBatch
	for _, sg := range segs {
		if len(cur.iov) > 0 && (cur.src != sg.src || cur.off+cur.size != sg.off || len(cur.iov)/16 == maxIov || cur.size+sg.size > limit) {
			out = append(out, cur)
			cur = fillBatch{}
		}
		if len(cur.iov) == 0 {
			cur.off, cur.src = sg.off, sg.src
		}
		cur.iov = binary.LittleEndian.AppendUint64(cur.iov, sg.addr)
		cur.iov = binary.LittleEndian.AppendUint64(cur.iov, sg.size)
		cur.size += sg.size
	}
	if len(cur.iov) > 0 {
		out = append(out, cur)
	}
	return out
}
