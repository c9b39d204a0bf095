package mem

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
	"amber/internal/proc"
)

// TaskSize is the top of user address space with 4-level page tables.
const TaskSize = 0x7ffffffff000

// RestoreInput is what planning the memory of one task needs.
type RestoreInput struct {
	MM        *mm.MmEntry
	Pagemap   []*pagemap.PagemapEntry // entries after the head
	PagesPath string
	// FilePath resolves a files.img id (VmaEntry.shmid, exe_file_id) to
	// the path to open.
	FilePath func(id uint32) (string, error)
	// Current are the mappings the new task has now: a copy of amber's
	// stub, or of its restored parent.
	Current []proc.VMA
	// Parent is the memory of the restored parent the task was forked
	// from, nil for a task forked from the stub.
	Parent *Parent
	// Cow lists this task's pages that were its parent's very pages at
	// dump (cow-PID.img): where they stay mapped, they need no writing.
	Cow []Run
	// Workers is how many threads of the task may fill its memory at
	// once (the machine's CPUs).
	Workers int
	// Pid is the task's PID: it tells the task that creates a shared
	// memory object from those that open it.
	Pid int
	// Shmem are the anonymous shared memory objects of the tree, by
	// shmid (LoadShmem).
	Shmem map[uint64]*Shmem
	// Memfd returns a descriptor, opened with flags, of the memfd that
	// files.img id names, for mapping it (files.Memfds.MapFd). The
	// descriptor stays open: the memfd planner owns it.
	Memfd func(b *plan.Builder, fileID, flags uint32) (int, error)
	// Scratch is the task's scratch area, which temporary mappings avoid.
	Scratch Run
}

// Parent is the restored memory a forked task inherits.
type Parent struct {
	MM      *mm.MmEntry
	Pagemap []*pagemap.PagemapEntry
}

// VdsoBlock returns the range covering the kernel's special mappings
// ([vvar], [vvar_vclock], [vdso]) among vmas, which must be contiguous.
func VdsoBlock(vmas []proc.VMA) (start, end uint64, pieces []proc.VMA, err error) {
	for _, v := range vmas {
		if v.Path == "[vdso]" || v.Path == "[vvar]" || v.Path == "[vvar_vclock]" {
			pieces = append(pieces, v)
		}
	}
	if len(pieces) == 0 {
		return 0, 0, nil, nil
	}
	start, end = pieces[0].Start, pieces[len(pieces)-1].End
	for i := 1; i < len(pieces); i++ {
		if pieces[i].Start != pieces[i-1].End {
			return 0, 0, nil, fmt.Errorf("vdso block not contiguous at %#x", pieces[i].Start)
		}
	}
	return start, end, pieces, nil
}

// PlanEmpty plans clearing the task's address space for the dumped
// layout: the vdso block is parked in the scratch area unless it already
// sits where the dumped task had it, and everything is unmapped but the
// scratch area and the mappings inherited from a parent that the task
// keeps as they are.
func PlanEmpty(b *plan.Builder, in *RestoreInput, scratchBase, scratchEnd uint64) error {
	bs, be, pieces, err := VdsoBlock(in.Current)
	if err != nil {
		return err
	}
	keepVdso := vdsoInPlace(in, bs, be)
	if !keepVdso {
		for _, p := range pieces {
			to := b.Park() + (p.Start - bs)
			b.Call(fmt.Sprintf("park %s at %#x", p.Path, to), unix.SYS_MREMAP,
				p.Start, p.Size(), p.Size(), unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, to)
		}
	}
	stay := []Run{{scratchBase, scratchEnd}}
	if keepVdso {
		stay = append(stay, Run{bs, be})
	}
	keep := keptVMAs(in)
	for i, v := range in.MM.GetVmas() {
		if keep[i] {
			stay = append(stay, Run{v.GetStart(), v.GetEnd()})
		}
	}
	for _, gap := range complement(stay, 0, TaskSize) {
		if overlapsAny(gap, in.Current) {
			b.Call(fmt.Sprintf("unmap %#x-%#x", gap.Start, gap.End), unix.SYS_MUNMAP, gap.Start, gap.End-gap.Start)
		}
	}
	return nil
}

// vdsoInPlace reports whether the task's vdso block already lies where
// the dumped one did, as in a task forked from its restored parent.
func vdsoInPlace(in *RestoreInput, bs, be uint64) bool {
	ts, te := targetVdso(in.MM.GetVmas())
	return bs != 0 && ts == bs && te == be
}

func targetVdso(vmas []*vma.VmaEntry) (start, end uint64) {
	for _, v := range vmas {
		if isVdso(v) {
			if start == 0 {
				start = v.GetStart()
			}
			end = v.GetEnd()
		}
	}
	return start, end
}

// keptVMAs marks the dumped VMAs the task inherits unchanged from its
// restored parent: same range, protection, flags and backing file, and
// inherited by fork as they are (see forkKeeps).
func keptVMAs(in *RestoreInput) []bool {
	vmas := in.MM.GetVmas()
	keep := make([]bool, len(vmas))
	if in.Parent == nil {
		return keep
	}
	parent := map[uint64]*vma.VmaEntry{}
	for _, v := range in.Parent.MM.GetVmas() {
		parent[v.GetStart()] = v
	}
	for i, v := range vmas {
		p, ok := parent[v.GetStart()]
		keep[i] = ok && !isVdso(v) && SameVMA(p, v) && forkKeeps(p)
	}
	return keep
}

// forkKeeps reports whether a child gets the parent's VMA v as it is by
// fork: not with MADV_DONTFORK or MADV_WIPEONFORK; not MAP_LOCKED (fork
// clears VM_LOCKED in the child); not private hugetlb memory, whose
// pages cannot be dropped one by one (planZeroes), so the child maps
// its own as CRIU does.
func forkKeeps(v *vma.VmaEntry) bool {
	const notForked = 1<<unix.MADV_DONTFORK | 1<<unix.MADV_WIPEONFORK
	if v.GetMadv()&notForked != 0 || v.GetFlags()&unix.MAP_LOCKED != 0 {
		return false
	}
	return v.GetFlags()&unix.MAP_HUGETLB == 0 || v.GetStatus()&StatusAnonShared != 0
}

// complement returns the parts of [lo, hi) that no run covers.
func complement(runs []Run, lo, hi uint64) []Run {
	runs = slices.Clone(runs)
	slices.SortFunc(runs, func(a, b Run) int { return cmpU64(a.Start, b.Start) })
	var out []Run
	at := lo
	for _, r := range runs {
		if r.Start > at {
			out = append(out, Run{at, r.Start})
		}
		at = max(at, r.End)
	}
	if at < hi {
		out = append(out, Run{at, hi})
	}
	return out
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func overlapsAny(r Run, vmas []proc.VMA) bool {
	for _, v := range vmas {
		if v.Start < r.End && r.Start < v.End {
			return true
		}
	}
	return false
}

// PlanRestore plans recreating every VMA of the image that the task does
// not keep from its parent, filling private memory from the pages image,
// setting final protections, moving the vdso block into place and setting
// the mm fields.
func PlanRestore(b *plan.Builder, in *RestoreInput) error {
	vmas := in.MM.GetVmas()
	keep := keptVMAs(in)
	segs, err := fillSegments(in, keep)
	if err != nil {
		return err
	}
	filled := filledVMAs(vmas, segs)
	mapped, err := planMappings(b, in, vmas, keep, filled)
	if err != nil {
		return err
	}
	planZeroes(b, in, keep)
	planFill(b, in.PagesPath, segs, in.Workers)
	for i, v := range vmas {
		if mapped[i] != uint64(v.GetProt()) && !isVdso(v) {
			b.Call("protect vma", unix.SYS_MPROTECT, v.GetStart(), v.GetEnd()-v.GetStart(), uint64(v.GetProt()))
		}
	}
	if err := planVdso(b, in); err != nil {
		return err
	}
	return planMMFields(b, in)
}

func isVdso(v *vma.VmaEntry) bool { return v.GetStatus()&(StatusVdso|StatusVvar) != 0 }

func vmaName(v *vma.VmaEntry) string {
	return fmt.Sprintf("vma %x-%x", v.GetStart(), v.GetEnd())
}

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

// findVMA returns the index of the first VMA ending above addr.
func findVMA(vmas []*vma.VmaEntry, addr uint64) int {
	i, _ := slices.BinarySearchFunc(vmas, addr, func(v *vma.VmaEntry, a uint64) int {
		switch {
		case v.GetEnd() <= a:
			return -1
		case v.GetStart() > a:
			return 1
		}
		return 0
	})
	return i
}

// NrPages is the length of a pagemap entry in pages (nr_pages, or
// compat_nr_pages in images of older CRIU).
func NrPages(e *pagemap.PagemapEntry) uint64 {
	if e.NrPages != nil {
		return e.GetNrPages()
	}
	return uint64(e.GetCompatNrPages())
}

type fileKey struct {
	id    uint32
	flags uint32
}

// planMappings maps every VMA the task does not keep in place and
// returns the protection each was mapped with. Adjacent anonymous VMAs
// that differ only in protection are mapped with one mmap and split by
// mprotect after the fill (the kernel splits them the same way). Each
// distinct file is opened once, just before its first mapping, and closed
// right after its last, so that thousands of mappings of one file need one
// descriptor; shared memory is mapped as shmem.go says. A kept VMA that
// will be written is made writable for the fill.
func planMappings(b *plan.Builder, in *RestoreInput, vmas []*vma.VmaEntry, keep, filled []bool) (mapped []uint64, err error) {
	files := newFileOpener(b, in, vmas, keep)
	shared := newSharedMapper(b, in, vmas, keep)
	mapped = make([]uint64, len(vmas))
	for i := 0; i < len(vmas); {
		v := vmas[i]
		prot := fillProt(v, filled[i])
		mapped[i] = prot
		switch {
		case isVdso(v):
			i++
		case keep[i]:
			if prot != uint64(v.GetProt()) {
				b.Call("make kept vma writable", unix.SYS_MPROTECT, v.GetStart(), v.GetEnd()-v.GetStart(), prot)
			}
			i++
		case isSharedMemory(v):
			if mapped[i], err = shared.mapVMA(i, prot); err != nil {
				return nil, fmt.Errorf("%s: %w", vmaName(v), err)
			}
			planMadvise(b, v)
			shared.done(i)
			i++
		case isFileVMA(v):
			fd, err := files.open(i)
			if err != nil {
				return nil, err
			}
			b.Call("map vma", unix.SYS_MMAP, v.GetStart(), v.GetEnd()-v.GetStart(), prot, uint64(v.GetFlags())|unix.MAP_FIXED, uint64(fd), v.GetPgoff())
			planMadvise(b, v)
			files.done(i)
			i++
		default:
			j := anonRun(vmas, keep, i)
			for k := i; k < j; k++ {
				prot |= fillProt(vmas[k], filled[k])
			}
			b.Call("map vma", unix.SYS_MMAP, v.GetStart(), vmas[j-1].GetEnd()-v.GetStart(), prot, uint64(v.GetFlags())|unix.MAP_FIXED, ^uint64(0), 0)
			for k := i; k < j; k++ {
				mapped[k] = prot
				planMadvise(b, vmas[k])
			}
			i = j
		}
	}
	return mapped, nil
}

// fillProt is the protection a VMA is mapped with: its own, writable if
// the fill writes into it.
func fillProt(v *vma.VmaEntry, filled bool) uint64 {
	prot := uint64(v.GetProt())
	if filled {
		prot |= unix.PROT_WRITE
	}
	return prot
}

// anonRun returns the end (exclusive) of the run of adjacent VMAs from i
// that one anonymous mmap can create: same flags, not kept, not growing
// down (a stack maps alone, to keep its guard gap).
func anonRun(vmas []*vma.VmaEntry, keep []bool, i int) int {
	v := vmas[i]
	j := i + 1
	if v.GetFlags()&unix.MAP_GROWSDOWN != 0 || v.GetStatus()&StatusAnonShared != 0 {
		return j
	}
	for j < len(vmas) && !keep[j] && !isVdso(vmas[j]) && !isFileVMA(vmas[j]) &&
		vmas[j].GetStart() == vmas[j-1].GetEnd() && vmas[j].GetFlags() == v.GetFlags() &&
		vmas[j].GetStatus() == v.GetStatus() {
		j++
	}
	return j
}

// fileOpener opens each mapped file once and closes it after its last
// mapping.
type fileOpener struct {
	b    *plan.Builder
	in   *RestoreInput
	vmas []*vma.VmaEntry
	last map[fileKey]int
	fds  map[fileKey]int
}

func newFileOpener(b *plan.Builder, in *RestoreInput, vmas []*vma.VmaEntry, keep []bool) *fileOpener {
	f := &fileOpener{b: b, in: in, vmas: vmas, last: map[fileKey]int{}, fds: map[fileKey]int{}}
	for i, v := range vmas {
		if isFileVMA(v) && !keep[i] {
			f.last[keyOfVMA(v)] = i
		}
	}
	return f
}

func keyOfVMA(v *vma.VmaEntry) fileKey { return fileKey{uint32(v.GetShmid()), v.GetFdflags()} }

// open returns the descriptor of VMA i's file, opening it if needed.
func (f *fileOpener) open(i int) (int, error) {
	k := keyOfVMA(f.vmas[i])
	if fd, ok := f.fds[k]; ok {
		return fd, nil
	}
	path, err := f.in.FilePath(k.id)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", vmaName(f.vmas[i]), err)
	}
	fd := f.b.Open("mapped file", path, int(k.flags), 0)
	f.fds[k] = fd
	return fd, nil
}

// done closes VMA i's file if i is its last mapping.
func (f *fileOpener) done(i int) {
	k := keyOfVMA(f.vmas[i])
	if f.last[k] == i {
		f.b.Close(f.fds[k])
		delete(f.fds, k)
	}
}

func isFileVMA(v *vma.VmaEntry) bool {
	return v.GetStatus()&(StatusFilePrivate|StatusFileShared) != 0 && v.GetStatus()&StatusMemfd == 0
}

func planMadvise(b *plan.Builder, v *vma.VmaEntry) {
	m := v.GetMadv()
	for advice := 0; advice < 64; advice++ {
		if m&(1<<advice) != 0 {
			b.Call("advise vma", unix.SYS_MADVISE,
				v.GetStart(), v.GetEnd()-v.GetStart(), uint64(advice))
		}
	}
}

// segment is a range of task memory filled from the pages image.
type segment struct {
	addr, size, off uint64 // off: offset in the pages image
}

// fillSegments lists what the pages image must write into the task: every
// present page of the pagemap except those the task keeps from its parent
// (cow runs inside kept VMAs), with their offsets in the image.
func fillSegments(in *RestoreInput, keep []bool) ([]segment, error) {
	skip := keptCow(in, keep)
	var segs []segment
	var off uint64
	for _, e := range in.Pagemap {
		if e.GetFlags()&PEPresent == 0 {
			if e.GetFlags()&(PEParent|PELazy) != 0 || e.GetInParent() {
				return nil, fmt.Errorf("%s: pagemap entry %#x: pages in a parent image or lazy pages are not supported yet", in.PagesPath, e.GetVaddr())
			}
			continue
		}
		r := Run{e.GetVaddr(), e.GetVaddr() + NrPages(e)*pageSize}
		for _, part := range subtract(r, skip) {
			segs = append(segs, segment{part.Start, part.End - part.Start, off + part.Start - r.Start})
		}
		off += r.End - r.Start
	}
	return segs, nil
}

// keptCow is the task's cow runs that lie in VMAs it keeps: the only
// pages whose inherited contents are already right.
func keptCow(in *RestoreInput, keep []bool) []Run {
	var out []Run
	vmas := in.MM.GetVmas()
	for _, c := range in.Cow {
		for i := findVMA(vmas, c.Start); i < len(vmas) && vmas[i].GetStart() < c.End; i++ {
			if keep[i] {
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
	mine := pagemapRuns(in.Pagemap)
	vmas := in.MM.GetVmas()
	for _, r := range pagemapRuns(in.Parent.Pagemap) {
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

// pagemapRuns lists the present pages of a pagemap as sorted runs.
func pagemapRuns(pm []*pagemap.PagemapEntry) []Run {
	var out []Run
	for _, e := range pm {
		if e.GetFlags()&PEPresent != 0 {
			out = appendRun(out, Run{e.GetVaddr(), e.GetVaddr() + NrPages(e)*pageSize})
		}
	}
	return out
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
			out = append(out, segment{sg.addr, limit, sg.off})
			sg = segment{sg.addr + limit, sg.size - limit, sg.off + limit}
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

// planFill plans the preadv calls that copy the pages image into place:
// IOV_MAX ranges per call, each call reading one contiguous part of the
// image, shared out between workers filling sections (one when there is
// little to fill).
func planFill(b *plan.Builder, pagesPath string, segs []segment, workers int) {
	var total uint64
	for _, sg := range segs {
		total += sg.size
	}
	if workers < 1 || total < parallelFillMin {
		workers = 1
	}
	fd := -1
	if total > 0 {
		fd = b.Open("pages image", pagesPath, unix.O_RDONLY, 0)
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
			b.Call("fill from "+pagesPath, unix.SYS_PREADV, uint64(fd), b.Bytes(bt.iov), uint64(len(bt.iov)/16), bt.off, 0)
		}
	}
	b.StartSection(SectionAfterFill)
	if fd >= 0 {
		b.Close(fd)
	}
}

// fillBatch is one preadv: its iovecs, where it reads in the image and
// how much.
type fillBatch struct {
	iov       []byte
	off, size uint64
}

// fillBatches groups segments into preadv calls: contiguous in the image,
// at most IOV_MAX ranges and limit bytes each.
func fillBatches(segs []segment, limit uint64) []fillBatch {
	var out []fillBatch
	var cur fillBatch
	for _, sg := range segs {
		if len(cur.iov) > 0 && (cur.off+cur.size != sg.off || len(cur.iov)/16 == maxIov || cur.size+sg.size > limit) {
			out = append(out, cur)
			cur = fillBatch{}
		}
		if len(cur.iov) == 0 {
			cur.off = sg.off
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

// planVdso moves the parked vdso block to where the dumped task had it.
func planVdso(b *plan.Builder, in *RestoreInput) error {
	bs, be, pieces, err := VdsoBlock(in.Current)
	if err != nil || len(pieces) == 0 || vdsoInPlace(in, bs, be) {
		return err
	}
	var target []*vma.VmaEntry
	for _, v := range in.MM.GetVmas() {
		if isVdso(v) {
			target = append(target, v)
		}
	}
	if len(target) == 0 {
		return nil // the dumped task had none: the parked one goes with the scratch area
	}
	ts := target[0].GetStart()
	if te := target[len(target)-1].GetEnd(); te-ts != be-bs || len(target) != len(pieces) {
		return fmt.Errorf("vdso: dumped block %#x-%#x (%d mappings) differs from this kernel's (%d bytes, %d mappings): restore on the kernel that dumped", ts, te, len(target), be-bs, len(pieces))
	}
	for i, p := range pieces {
		if target[i].GetStart()-ts != p.Start-bs || target[i].GetEnd()-target[i].GetStart() != p.Size() {
			return fmt.Errorf("vdso: dumped layout %#x-%#x does not match this kernel's %s", target[i].GetStart(), target[i].GetEnd(), p.Path)
		}
		from := b.Park() + (p.Start - bs)
		b.Call(fmt.Sprintf("move %s to %#x", p.Path, target[i].GetStart()), unix.SYS_MREMAP,
			from, p.Size(), p.Size(), unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, target[i].GetStart())
	}
	return nil
}

// planMMFields sets code, data, brk, stack, arguments, environment, auxv
// and exe file at once with PR_SET_MM_MAP (single PR_SET_MM fields need
// CAP_SYS_RESOURCE).
func planMMFields(b *plan.Builder, in *RestoreInput) error {
	m := in.MM
	exeFd := ^uint32(0)
	// The kernel refuses a new exe file while the old one is mapped: a
	// task forked from its parent keeps the parent's when it is the same.
	sameExe := in.Parent != nil && in.Parent.MM.GetExeFileId() == m.GetExeFileId()
	if id := m.GetExeFileId(); id != 0 && !sameExe {
		path, err := in.FilePath(id)
		if err != nil {
			return fmt.Errorf("exe file: %w", err)
		}
		exeFd = uint32(b.Open("exe file", path, unix.O_RDONLY, 0))
	}
	auxv := m.GetMmSavedAuxv()
	var auxvAddr uint64
	if len(auxv) > 0 {
		auxvAddr = b.Uint64s(auxv...)
	}
	s := make([]byte, 0, 104)
	for _, w := range []uint64{m.GetMmStartCode(), m.GetMmEndCode(), m.GetMmStartData(), m.GetMmEndData(),
		m.GetMmStartBrk(), m.GetMmBrk(), m.GetMmStartStack(), m.GetMmArgStart(), m.GetMmArgEnd(),
		m.GetMmEnvStart(), m.GetMmEnvEnd(), auxvAddr} {
		s = binary.LittleEndian.AppendUint64(s, w)
	}
	s = binary.LittleEndian.AppendUint32(s, uint32(len(auxv)*8))
	s = binary.LittleEndian.AppendUint32(s, exeFd)
	b.Call("set mm fields (PR_SET_MM_MAP)", unix.SYS_PRCTL, unix.PR_SET_MM, unix.PR_SET_MM_MAP, b.Bytes(s), uint64(len(s)))
	if exeFd != ^uint32(0) {
		b.Close(int(exeFd))
	}
	return nil
}
