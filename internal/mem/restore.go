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
	// stub, whose vdso block is kept and moved into place.
	Current []proc.VMA
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

// PlanEmpty plans parking the vdso block inside the scratch area and
// unmapping everything else the task has, so that the dumped layout can be
// laid down without collisions.
func PlanEmpty(b *plan.Builder, in *RestoreInput, scratchEnd uint64, scratchBase uint64) error {
	bs, _, pieces, err := VdsoBlock(in.Current)
	if err != nil {
		return err
	}
	for _, p := range pieces {
		to := b.Park() + (p.Start - bs)
		b.Call(fmt.Sprintf("park %s at %#x", p.Path, to), unix.SYS_MREMAP,
			p.Start, p.Size(), p.Size(), unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, to)
	}
	b.Call("unmap below scratch", unix.SYS_MUNMAP, 0, scratchBase)
	b.Call("unmap above scratch", unix.SYS_MUNMAP, scratchEnd, TaskSize-scratchEnd)
	return nil
}

// PlanRestore plans recreating every VMA of the image, filling private
// memory from the pages image, setting final protections, moving the vdso
// block into place and setting the mm fields.
func PlanRestore(b *plan.Builder, in *RestoreInput) error {
	vmas := in.MM.GetVmas()
	filled := filledVMAs(vmas, in.Pagemap)
	if err := planMappings(b, in, vmas, filled); err != nil {
		return err
	}
	if err := planFill(b, in); err != nil {
		return err
	}
	for i, v := range vmas {
		if filled[i] && v.GetProt()&unix.PROT_WRITE == 0 && !isVdso(v) {
			b.Call(fmt.Sprintf("protect %s", vmaName(v)), unix.SYS_MPROTECT,
				v.GetStart(), v.GetEnd()-v.GetStart(), uint64(v.GetProt()))
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

// filledVMAs marks the VMAs that pages of the pagemap fall into.
func filledVMAs(vmas []*vma.VmaEntry, pm []*pagemap.PagemapEntry) []bool {
	filled := make([]bool, len(vmas))
	for _, e := range pm {
		start := e.GetVaddr()
		end := start + NrPages(e)*pageSize
		i, _ := slices.BinarySearchFunc(vmas, start, func(v *vma.VmaEntry, a uint64) int {
			switch {
			case v.GetEnd() <= a:
				return -1
			case v.GetStart() > a:
				return 1
			}
			return 0
		})
		for ; i < len(vmas) && vmas[i].GetStart() < end; i++ {
			filled[i] = true
		}
	}
	return filled
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

// planMappings maps every VMA in place. Each distinct file is opened once,
// just before its first mapping, and closed right after its last, so that
// thousands of mappings of one file need one descriptor.
func planMappings(b *plan.Builder, in *RestoreInput, vmas []*vma.VmaEntry, filled []bool) error {
	last := map[fileKey]int{}
	for i, v := range vmas {
		if isFileVMA(v) {
			last[fileKey{uint32(v.GetShmid()), v.GetFdflags()}] = i
		}
	}
	open := map[fileKey]int{}
	for i, v := range vmas {
		if isVdso(v) {
			continue
		}
		prot := uint64(v.GetProt())
		if filled[i] {
			prot |= unix.PROT_WRITE // filled by preadv, protected after
		}
		fd, off := ^uint64(0), uint64(0)
		if isFileVMA(v) {
			k := fileKey{uint32(v.GetShmid()), v.GetFdflags()}
			n, ok := open[k]
			if !ok {
				path, err := in.FilePath(k.id)
				if err != nil {
					return fmt.Errorf("%s: %w", vmaName(v), err)
				}
				n = b.Open("mapped file", path, int(k.flags), 0)
				open[k] = n
			}
			fd, off = uint64(n), v.GetPgoff()
		}
		flags := uint64(v.GetFlags()) | unix.MAP_FIXED
		b.Call("map "+vmaName(v), unix.SYS_MMAP, v.GetStart(), v.GetEnd()-v.GetStart(), prot, flags, fd, off)
		planMadvise(b, v)
		if isFileVMA(v) {
			k := fileKey{uint32(v.GetShmid()), v.GetFdflags()}
			if last[k] == i {
				b.Close(open[k])
				delete(open, k)
			}
		}
	}
	return nil
}

func isFileVMA(v *vma.VmaEntry) bool {
	return v.GetStatus()&(StatusFilePrivate|StatusFileShared) != 0
}

func planMadvise(b *plan.Builder, v *vma.VmaEntry) {
	m := v.GetMadv()
	for advice := 0; advice < 64; advice++ {
		if m&(1<<advice) != 0 {
			b.Call(fmt.Sprintf("madvise %d %s", advice, vmaName(v)), unix.SYS_MADVISE,
				v.GetStart(), v.GetEnd()-v.GetStart(), uint64(advice))
		}
	}
}

// planFill plans the preadv calls that copy the pages image into place:
// IOV_MAX ranges per call, in image order.
func planFill(b *plan.Builder, in *RestoreInput) error {
	if len(in.Pagemap) == 0 {
		return nil
	}
	fd := b.Open("pages image", in.PagesPath, unix.O_RDONLY, 0)
	var off uint64
	var iov []byte
	var batchOff, batchLen uint64
	flush := func() {
		if len(iov) == 0 {
			return
		}
		n := uint64(len(iov) / 16)
		b.Call(fmt.Sprintf("fill %d ranges, %d bytes from %s+%d", n, batchLen, in.PagesPath, batchOff),
			unix.SYS_PREADV, uint64(fd), b.Bytes(iov), n, batchOff, 0)
		iov, batchOff, batchLen = nil, off, 0
	}
	for _, e := range in.Pagemap {
		if e.GetFlags()&PEPresent == 0 {
			if e.GetFlags()&(PEParent|PELazy) != 0 || e.GetInParent() {
				return fmt.Errorf("%s: pagemap entry %#x: pages in a parent image or lazy pages are not supported yet", in.PagesPath, e.GetVaddr())
			}
			continue
		}
		l := NrPages(e) * pageSize
		iov = binary.LittleEndian.AppendUint64(iov, e.GetVaddr())
		iov = binary.LittleEndian.AppendUint64(iov, l)
		off += l
		batchLen += l
		if len(iov)/16 == maxIov {
			flush()
		}
	}
	flush()
	b.Close(fd)
	return nil
}

// planVdso moves the parked vdso block to where the dumped task had it.
func planVdso(b *plan.Builder, in *RestoreInput) error {
	bs, be, pieces, err := VdsoBlock(in.Current)
	if err != nil || len(pieces) == 0 {
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
	if id := m.GetExeFileId(); id != 0 {
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
