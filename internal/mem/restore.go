package mem

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/image"
	"amber/internal/plan"
	"amber/internal/proc"
)

// TaskSize is the top of user address space with 4-level page tables.
const TaskSize = 0x7ffffffff000

// RestoreInput is what planning the memory of one task needs.
type RestoreInput struct {
	MM      *mm.MmEntry
	Pagemap []*pagemap.PagemapEntry // entries after the head
	// Pages is how the task opens the pages image it reads itself
	// (image.Path.ForTask).
	Pages image.TaskFile
	// Parents are the task's pagemaps and pages images in the parent
	// images of an incremental dump, nearest first: PE_PARENT entries
	// take their pages from there.
	Parents []PagesLayer
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
	// Populate makes the fill fault in the memory each preadv writes
	// before the preadv (MADV_POPULATE_WRITE, Linux 5.14; see
	// PopulateWorks).
	Populate bool
	// Pid is the task's PID: it tells the task that creates a shared
	// memory object from those that open it.
	Pid int
	// ProcPid is the PID by which amber's /proc, which the task opens
	// shared memory through, names a task of the tree (the images' PID
	// in a new pid namespace); nil: the images' PID.
	ProcPid func(pid int) int
	// Shmem are the anonymous shared memory objects of the tree, by
	// shmid (LoadShmem).
	Shmem map[uint64]*Shmem
	// Memfd returns a descriptor, opened with flags, of the memfd that
	// files.img id names, for mapping it (files.Memfds.MapFd). The
	// descriptor stays open: the memfd planner owns it.
	Memfd func(b *plan.Builder, fileID, flags uint32) (int, error)
	// Scratch is the task's scratch area, which temporary mappings avoid.
	Scratch Run
	// Lazy, if set, makes the restore lazy: PlanRestore leaves the pages
	// of private anonymous memory out of the fill and lists them there.
	Lazy *LazyPages
	// KernelVdso is this kernel's vdso code, and DumpedVdso reads the
	// dumped task's: where they differ, the restore builds a proxy
	// (vdso.go). Without either only their layouts are compared.
	KernelVdso []byte
	DumpedVdso func() ([]byte, error)
	// Warnings, if set, collects what the restore of the task does
	// otherwise than the dumped task had it.
	Warnings *[]string
}

// Parent is the restored memory a forked task inherits.
type Parent struct {
	MM      *mm.MmEntry
	Pagemap []*pagemap.PagemapEntry
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
	if segs, err = splitLazy(in, segs); err != nil {
		return err
	}
	filled := filledVMAs(vmas, segs)
	mapped, err := planMappings(b, in, vmas, keep, filled)
	if err != nil {
		return err
	}
	planZeroes(b, in, keep)
	planFill(b, in, segs, in.Workers)
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
