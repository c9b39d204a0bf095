package mem

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/image"
	"amber/internal/plan"
	"amber/internal/proc"
)

// Shared memory objects. Anonymous shared memory (MAP_SHARED|
// MAP_ANONYMOUS), memfds and SysV segments are files of the kernel's
// internal shmem mount: their pages belong to the object, not to a task.
// As CRIU does (criu/shmem.c), amber dumps each object once, however many
// tasks map it, into pagemap-shmem-SHMID.img (each vaddr an offset in the
// object) and a pages image of its own.
//
// At restore the first task restore makes that maps an anonymous object
// creates it and fills it; a child forked from it keeps the mapping it
// inherited when its VMA is the same; any other mapping of it, in that
// task or another, maps the object's file, which the task opens through
// /proc/CREATOR/map_files. Memfds (package files) and SysV segments
// (package ipc) are created their own way and filled from the same kind
// of images.

// ShmemSource is a shared memory object to dump: a path amber opens its
// file by, and how much of it the tree can see.
type ShmemSource struct {
	Shmid uint64 // names pagemap-shmem-SHMID.img
	Path  string // /proc/PID/map_files/START-END or /proc/PID/fd/N
	Size  uint64 // bytes from offset 0 worth saving
}

// DumpShmem writes pagemap-shmem-SHMID.img and pages-PAGESID.img with
// the pages of src below its size that hold data: those SEEK_DATA finds,
// less pages of zeroes. It returns how many pages it wrote.
func DumpShmem(src ShmemSource, dir image.Dir, pagesID uint32) (uint64, error) {
	f, err := os.Open(src.Path)
	if err != nil {
		return 0, fmt.Errorf("shared memory %d: %w", src.Shmid, err)
	}
	defer f.Close()
	pagesPath := dir.PagesPath(pagesID)
	out, err := pagesPath.Create()
	if err != nil {
		return 0, err
	}
	defer out.Close()
	runs, err := copyShmem(f, out, pageUp(src.Size))
	if err != nil {
		return 0, fmt.Errorf("shared memory %d (%s): %w", src.Shmid, src.Path, err)
	}
	if err := out.Close(); err != nil {
		return 0, err
	}
	var pages uint64
	for _, r := range runs {
		pages += (r.End - r.Start) / pageSize
	}
	return pages, writePagemap(dir.ShmemPagemapPath(src.Shmid), pagesID, pagemapEntries(runs, nil))
}

func pageUp(n uint64) uint64 { return (n + pageSize - 1) &^ (pageSize - 1) }

// copyShmem copies the pages of f in [0, size) that hold data to out and
// returns them as runs of offsets.
func copyShmem(f, out *os.File, size uint64) ([]Run, error) {
	var runs []Run
	buf := make([]byte, copyChunk)
	for off := uint64(0); off < size; {
		data, hole, err := nextData(f, off)
		if err != nil || data >= size {
			return runs, err
		}
		hole = min(pageUp(hole), size)
		for at := data &^ (pageSize - 1); at < hole; {
			n := min(uint64(len(buf)), hole-at)
			if err := readFullAt(f, buf[:n], at); err != nil {
				return nil, err
			}
			var werr error
			runs, werr = appendNonZero(runs, out, buf[:n], at)
			if werr != nil {
				return nil, werr
			}
			at += n
		}
		off = hole
	}
	return runs, nil
}

// nextData finds the next range of f holding data at or after off; data
// is past any size when there is none.
func nextData(f *os.File, off uint64) (data, hole uint64, err error) {
	d, err := unix.Seek(int(f.Fd()), int64(off), unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return ^uint64(0), ^uint64(0), nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("SEEK_DATA %#x: %w", off, err)
	}
	h, err := unix.Seek(int(f.Fd()), d, unix.SEEK_HOLE)
	if err != nil {
		return 0, 0, fmt.Errorf("SEEK_HOLE %#x: %w", d, err)
	}
	return uint64(d), uint64(h), nil
}

// readFullAt fills buf from offset at; what lies past the end of the
// file (the tail of its last page) reads as zeroes.
func readFullAt(f *os.File, buf []byte, at uint64) error {
	n, err := f.ReadAt(buf, int64(at))
	if err == io.EOF {
		clear(buf[n:])
		return nil
	}
	return err
}

var zeroPage [pageSize]byte

// appendNonZero writes the pages of buf (at offset at) that are not all
// zeroes to out and adds them to runs.
func appendNonZero(runs []Run, out *os.File, buf []byte, at uint64) ([]Run, error) {
	for i := uint64(0); i < uint64(len(buf)); i += pageSize {
		p := buf[i : i+pageSize]
		if bytes.Equal(p, zeroPage[:]) {
			continue
		}
		if _, err := out.Write(p); err != nil {
			return nil, err
		}
		runs = appendRun(runs, Run{at + i, at + i + pageSize})
	}
	return runs, nil
}

// ShmemPages are the saved contents of one shared memory object.
type ShmemPages struct {
	Path    image.Path              // the pages image
	Pagemap []*pagemap.PagemapEntry // after the head; vaddr is an offset in the object
}

// ReadShmemPages reads pagemap-shmem-SHMID.img and checks that its pages
// image holds what it lists.
func ReadShmemPages(dir image.Dir, shmid uint64) (*ShmemPages, error) {
	path := dir.ShmemPagemapPath(shmid)
	head, entries, err := ReadPagemap(path)
	if err != nil {
		return nil, fmt.Errorf("shared memory %d: %w", shmid, err)
	}
	p := &ShmemPages{Path: dir.PagesPath(head.GetPagesId()), Pagemap: entries}
	var pages uint64
	for _, e := range entries {
		if e.GetFlags()&(PEParent|PELazy) != 0 || e.GetInParent() {
			return nil, fmt.Errorf("%s: entry %#x: pages in a parent image or lazy pages are not supported", path, e.GetVaddr())
		}
		pages += NrPages(e)
	}
	st, err := p.Path.Stat()
	if err != nil {
		return nil, err
	}
	if uint64(st.Size()) != pages*pageSize {
		return nil, fmt.Errorf("%s: %d bytes, but %s lists %d pages", p.Path, st.Size(), path, pages)
	}
	return p, nil
}

// segments lists where the pages below size go when the object's offset
// 0 is at base. Pages past size no mapping shows are left out, as CRIU
// does.
func (p *ShmemPages) segments(base, size uint64) []segment {
	var segs []segment
	var off uint64
	for _, e := range p.Pagemap {
		n := NrPages(e) * pageSize
		if e.GetVaddr() < size {
			segs = append(segs, segment{base + e.GetVaddr(), min(n, size-e.GetVaddr()), off, 0})
		}
		off += n
	}
	return segs
}

// PlanWrite plans writing the pages into the object's file open at fd,
// which must be writable: a seek and a sendfile from the pages image for
// each run. Pages past size are left out; a write may grow the file to
// the end of a page, which the caller truncates.
func (p *ShmemPages) PlanWrite(b *plan.Builder, fd int, size uint64) {
	segs := splitSegments(p.segments(0, pageUp(size)), maxRW)
	if len(segs) == 0 {
		return
	}
	tf := p.Path.ForTask()
	img := b.Open("pages image", tf.Path, tf.Flags, 0)
	for _, sg := range segs {
		b.Call(fmt.Sprintf("seek fd %d to %#x", fd, sg.addr), unix.SYS_LSEEK, uint64(fd), sg.addr, unix.SEEK_SET)
		b.Call(fmt.Sprintf("write %d bytes from %s+%d to fd %d", sg.size, p.Path, sg.off, fd),
			unix.SYS_SENDFILE, uint64(fd), uint64(img), b.Uint64s(sg.off), sg.size)
	}
	b.Close(img)
}

// Shmem is one anonymous shared memory object of a restore.
type Shmem struct {
	ID    uint64 // shmid: the object's inode number at dump
	Size  uint64 // how far into it the tree maps, page aligned
	Pages *ShmemPages
	// Creator is the first task restore makes that maps the object: it
	// creates it.
	Creator int
	// At is one of the creator's mappings of it: a task that does not
	// inherit a mapping opens the object through
	// /proc/CREATOR/map_files/At.
	At Run
	// Hugetlb is MAP_HUGETLB with its page size for hugetlb memory, 0
	// for shmem.
	Hugetlb uint32
}

// hugetlbMask picks MAP_HUGETLB and its page size out of mmap flags.
const hugetlbMask = unix.MAP_HUGETLB | unix.MAP_HUGE_MASK<<unix.MAP_HUGE_SHIFT

// TaskVMAs are one task's dumped mappings.
type TaskVMAs struct {
	Pid  int
	VMAs []*vma.VmaEntry
}

// isAnonShared tells MAP_SHARED|MAP_ANONYMOUS memory (not a SysV segment).
func isAnonShared(v *vma.VmaEntry) bool {
	return v.GetStatus()&StatusAnonShared != 0 && v.GetStatus()&StatusSysVIPC == 0
}

// LoadShmem finds the anonymous shared memory objects that tasks (in the
// order restore makes them) map, and reads their pages.
func LoadShmem(dir image.Dir, tasks []TaskVMAs) (map[uint64]*Shmem, error) {
	out := map[uint64]*Shmem{}
	for _, t := range tasks {
		for _, v := range t.VMAs {
			if !isAnonShared(v) {
				continue
			}
			obj := out[v.GetShmid()]
			if obj == nil {
				obj = &Shmem{ID: v.GetShmid(), Creator: t.Pid, At: Run{v.GetStart(), v.GetEnd()},
					Hugetlb: v.GetFlags() & hugetlbMask}
				out[obj.ID] = obj
			}
			obj.Size = max(obj.Size, pageUp(v.GetPgoff()+v.GetEnd()-v.GetStart()))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(out)) {
		var err error
		if out[id].Pages, err = ReadShmemPages(dir, id); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// sharedMapper maps the shared memory VMAs of one planMappings: it
// keeps the file of each anonymous object open from its first mapping to
// its last, and follows the SysV attachment being restored.
type sharedMapper struct {
	b    *plan.Builder
	in   *RestoreInput
	vmas []*vma.VmaEntry
	last map[uint64]int // shmid -> index of the last VMA that maps it
	open map[uint64]int // shmid -> descriptor of its file
	sysv sysvChain
}

func newSharedMapper(b *plan.Builder, in *RestoreInput, vmas []*vma.VmaEntry, keep []bool) *sharedMapper {
	m := &sharedMapper{b: b, in: in, vmas: vmas, last: map[uint64]int{}, open: map[uint64]int{}}
	for i, v := range vmas {
		if isAnonShared(v) && !keep[i] {
			m.last[v.GetShmid()] = i
		}
	}
	return m
}

// isSharedMemory tells the VMAs sharedMapper makes.
func isSharedMemory(v *vma.VmaEntry) bool {
	return v.GetStatus()&(StatusAnonShared|StatusSysVIPC|StatusMemfd) != 0
}

// mapVMA makes VMA i with protection prot and returns the protection it
// got; PlanRestore sets the final one after the fill.
func (m *sharedMapper) mapVMA(i int, prot uint64) (uint64, error) {
	v := m.vmas[i]
	switch {
	case v.GetStatus()&StatusSysVIPC != 0:
		return m.attachSysV(i)
	case v.GetStatus()&StatusMemfd != 0:
		return prot, m.mapMemfd(v, prot)
	}
	return m.mapShmem(i, prot)
}

// done closes the object's file after its last mapping.
func (m *sharedMapper) done(i int) {
	id := m.vmas[i].GetShmid()
	if fd, ok := m.open[id]; ok && isAnonShared(m.vmas[i]) && m.last[id] == i {
		m.b.Close(fd)
		delete(m.open, id)
	}
}

// mapMemfd maps v from a descriptor of its memfd, which the memfd planner
// gives and keeps.
func (m *sharedMapper) mapMemfd(v *vma.VmaEntry, prot uint64) error {
	if m.in.Memfd == nil {
		return fmt.Errorf("memfd mapping (file id %d): no memfd planner", v.GetShmid())
	}
	fd, err := m.in.Memfd(m.b, uint32(v.GetShmid()), v.GetFdflags())
	if err != nil {
		return err
	}
	m.b.Call(fmt.Sprintf("map %s from memfd file id %d", vmaName(v), v.GetShmid()), unix.SYS_MMAP,
		v.GetStart(), v.GetEnd()-v.GetStart(), prot, uint64(v.GetFlags())|unix.MAP_FIXED, uint64(fd), v.GetPgoff())
	return nil
}

// mapShmem maps VMA i, a mapping of an anonymous shared memory object:
// from the object's file if the task has it open already; else the
// creator makes the object (in place when this VMA is all of it), and
// any other task opens the creator's.
func (m *sharedMapper) mapShmem(i int, prot uint64) (uint64, error) {
	v := m.vmas[i]
	id := v.GetShmid()
	if fd, ok := m.open[id]; ok {
		m.mapShmemFile(v, prot, fd)
		return prot, nil
	}
	obj := m.in.Shmem[id]
	if obj == nil {
		return 0, fmt.Errorf("shared memory %d: no such object among the images", id)
	}
	if obj.Creator != m.in.Pid {
		path := fmt.Sprintf("/proc/%d/map_files/%x-%x", m.in.procPid(obj.Creator), obj.At.Start, obj.At.End)
		m.open[id] = m.b.Open(fmt.Sprintf("shared memory %d of pid %d", id, obj.Creator), path, unix.O_RDWR, 0)
		m.mapShmemFile(v, prot, m.open[id])
		return prot, nil
	}
	if v.GetPgoff() == 0 && v.GetEnd()-v.GetStart() == obj.Size {
		return m.createShmemInPlace(i, prot, obj), nil
	}
	fd, err := m.createShmemAside(obj)
	if err != nil {
		return 0, err
	}
	m.open[id] = fd
	m.mapShmemFile(v, prot, fd)
	return prot, nil
}

// mapShmemFile maps v from the object's file open at fd.
func (m *sharedMapper) mapShmemFile(v *vma.VmaEntry, prot uint64, fd int) {
	flags := uint64(v.GetFlags())&^unix.MAP_ANONYMOUS | unix.MAP_FIXED
	m.b.Call(fmt.Sprintf("map %s from shared memory %d", vmaName(v), v.GetShmid()), unix.SYS_MMAP,
		v.GetStart(), v.GetEnd()-v.GetStart(), prot, flags, uint64(fd), v.GetPgoff())
}

// createShmemInPlace makes the object with the mapping that is all of
// it, writable for the fill, fills it, and opens its file if more
// mappings of it follow. It returns the protection the mapping got.
func (m *sharedMapper) createShmemInPlace(i int, prot uint64, obj *Shmem) uint64 {
	v := m.vmas[i]
	start, size := v.GetStart(), v.GetEnd()-v.GetStart()
	m.b.Call(fmt.Sprintf("create shared memory %d as %s", obj.ID, vmaName(v)), unix.SYS_MMAP,
		start, size, prot|unix.PROT_WRITE, uint64(v.GetFlags())|unix.MAP_FIXED, ^uint64(0), 0)
	planFillSerial(m.b, obj.Pages.Path.ForTask(), obj.Pages.segments(start, size), m.in.Populate)
	if m.last[obj.ID] > i {
		path := fmt.Sprintf("/proc/self/map_files/%x-%x", start, start+size)
		m.open[obj.ID] = m.b.Open(fmt.Sprintf("shared memory %d", obj.ID), path, unix.O_RDWR, 0)
	}
	return prot | unix.PROT_WRITE
}

// createShmemAside makes the object in a hole of both layouts, fills it,
// opens its file and unmaps it again: the object's mappings are then made
// from the file, at their offsets.
func (m *sharedMapper) createShmemAside(obj *Shmem) (int, error) {
	at, err := m.hole(obj.Size, HugePageSize(obj.Hugetlb))
	if err != nil {
		return 0, fmt.Errorf("shared memory %d: %w", obj.ID, err)
	}
	flags := unix.MAP_SHARED | unix.MAP_ANONYMOUS | unix.MAP_FIXED | uint64(obj.Hugetlb)
	m.b.Call(fmt.Sprintf("create shared memory %d at %#x", obj.ID, at), unix.SYS_MMAP,
		at, obj.Size, unix.PROT_READ|unix.PROT_WRITE, flags, ^uint64(0), 0)
	planFillSerial(m.b, obj.Pages.Path.ForTask(), obj.Pages.segments(at, obj.Size), m.in.Populate)
	path := fmt.Sprintf("/proc/self/map_files/%x-%x", at, at+obj.Size)
	fd := m.b.Open(fmt.Sprintf("shared memory %d", obj.ID), path, unix.O_RDWR, 0)
	m.b.Call(fmt.Sprintf("unmap shared memory %d at %#x", obj.ID, at), unix.SYS_MUNMAP, at, obj.Size)
	return fd, nil
}

// hole finds room, aligned to align (a power of two), for a temporary
// mapping of size bytes that no mapping of the dumped layout, of the
// task's layout at start or of the scratch area touches.
func (m *sharedMapper) hole(size, align uint64) (uint64, error) {
	cur := m.in.Current
	if s := m.in.Scratch; s.End > s.Start {
		cur = append(slices.Clone(cur), proc.VMA{Start: s.Start, End: s.End})
	}
	at, err := ScratchBase(m.in.MM.GetVmas(), cur, size+align-pageSize)
	return (at + align - 1) &^ (align - 1), err
}

// planFillSerial plans copying segments of a pages image into memory
// with preadv calls in the current section (shared memory is filled as
// it is made, before the task's own parallel fill), each after faulting
// in what it writes if populate is set.
func planFillSerial(b *plan.Builder, pages image.TaskFile, segs []segment, populate bool) {
	if len(segs) == 0 {
		return
	}
	fd := b.Open("pages image", pages.Path, pages.Flags, 0)
	for _, bt := range fillBatches(splitSegments(segs, maxRW), maxRW) {
		if populate {
			planPopulate(b, bt.iov)
		}
		b.Call("fill from "+pages.Path, unix.SYS_PREADV, uint64(fd), b.Bytes(bt.iov), uint64(len(bt.iov)/16), bt.off, 0)
	}
	b.Close(fd)
}

// CopyInto copies the pages below size into buf, the object mapped in
// amber itself (a SysV segment, which amber fills before the tasks attach
// it).
func (p *ShmemPages) CopyInto(buf []byte, size uint64) error {
	if len(p.Pagemap) == 0 {
		return nil
	}
	f, err := p.Path.Open()
	if err != nil {
		return err
	}
	defer f.Close()
	for _, sg := range p.segments(0, min(pageUp(size), uint64(len(buf)))) {
		end := min(sg.addr+sg.size, uint64(len(buf)))
		if _, err := f.ReadAt(buf[sg.addr:end], int64(sg.off)); err != nil {
			return fmt.Errorf("%s: %w", p.Path, err)
		}
	}
	return nil
}

// procPid is the PID by which amber's /proc names pid, a task of the tree.
func (in *RestoreInput) procPid(pid int) int {
	if in.ProcPid == nil {
		return pid
	}
	return in.ProcPid(pid)
}
