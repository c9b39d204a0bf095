package mem

// The address space before the dumped layout goes in: what is kept from
// a parent, what is unmapped, and the vdso block parked and moved.

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
	"amber/internal/proc"
)

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
// its own as CRIU does; nor a packet socket's rings, which the child
// maps again from its own descriptor.
func forkKeeps(v *vma.VmaEntry) bool {
	const notForked = 1<<unix.MADV_DONTFORK | 1<<unix.MADV_WIPEONFORK
	if v.GetMadv()&notForked != 0 || v.GetFlags()&unix.MAP_LOCKED != 0 || isSocketVMA(v) {
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

// planVdso moves the parked vdso block to where the dumped task had it,
// by CRIU's rule for remapping the kernel's vdso in place (its
// blobs_matches and park_at): the [vdso] code goes where the dumped
// [vdso] was, and the vvar data, [vvar] with [vvar_vclock] after it,
// where the dumped vvar was, so the code finds its data at the same
// offset. The dumped vvar may be one VMA covering both (CRIU 4.2 merges
// them) or two (amber keeps the kernel's split): only its size and its
// side of the code must match this kernel's.
func planVdso(b *plan.Builder, in *RestoreInput) error {
	bs, be, pieces, err := VdsoBlock(in.Current)
	if err != nil || len(pieces) == 0 || vdsoInPlace(in, bs, be) {
		return err
	}
	dumped, err := vdsoOfImage(in.MM.GetVmas())
	if err != nil || dumped.code.End == 0 {
		return err // none: the parked block goes with the scratch area
	}
	here := vdsoOfKernel(pieces)
	var code []byte // the dumped vdso's
	if in.KernelVdso != nil && in.DumpedVdso != nil {
		if code, err = in.DumpedVdso(); err != nil {
			return err
		}
	}
	if err := here.alike(dumped, code, in.KernelVdso); err != nil {
		if code == nil || in.KernelVdso == nil {
			return fmt.Errorf("vdso: %w: restore on the kernel that dumped", err)
		}
		missing, perr := planVdsoProxy(b, in, pieces, bs, dumped, here, code)
		if perr != nil {
			return fmt.Errorf("vdso: %w; and no proxy: %w", err, perr)
		}
		if len(missing) > 0 && in.Warnings != nil {
			*in.Warnings = append(*in.Warnings, fmt.Sprintf("pid %d: this kernel's vdso has no %s: the restored process's calls of the dumped one return ENOSYS",
				in.Pid, strings.Join(missing, ", ")))
		}
		return nil
	}
	for _, p := range pieces {
		to := dumped.code.Start
		if p.Path != "[vdso]" {
			to = dumped.data.Start + (p.Start - here.data.Start)
		}
		from := b.Park() + (p.Start - bs)
		b.Call(fmt.Sprintf("move %s to %#x", p.Path, to), unix.SYS_MREMAP,
			from, p.Size(), p.Size(), unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, to)
	}
	return nil
}

// vdsoLayout is where a vdso block's code ([vdso]) and data ([vvar] and
// [vvar_vclock], contiguous) lie; an empty Run for a part that is absent.
type vdsoLayout struct {
	code, data Run
}

// vdsoOfImage finds the dumped task's vdso code and vvar data: one [vdso]
// VMA and contiguous vvar VMAs.
func vdsoOfImage(vmas []*vma.VmaEntry) (vdsoLayout, error) {
	var l vdsoLayout
	for _, v := range vmas {
		r := Run{v.GetStart(), v.GetEnd()}
		switch {
		case v.GetStatus()&StatusVdso != 0:
			if l.code.End != 0 {
				return l, fmt.Errorf("vdso: two [vdso] VMAs in the image, at %#x and %#x", l.code.Start, r.Start)
			}
			l.code = r
		case v.GetStatus()&StatusVvar != 0:
			if l.data.End != 0 && l.data.End != r.Start {
				return l, fmt.Errorf("vdso: vvar VMAs in the image not contiguous at %#x", r.Start)
			}
			if l.data.End == 0 {
				l.data.Start = r.Start
			}
			l.data.End = r.End
		}
	}
	if l.data.End != 0 && l.code.End == 0 {
		return l, fmt.Errorf("vdso: the image has vvar at %#x but no [vdso]", l.data.Start)
	}
	return l, nil
}

// vdsoOfKernel is the layout of this kernel's block, whose pieces
// VdsoBlock found contiguous.
func vdsoOfKernel(pieces []proc.VMA) vdsoLayout {
	var l vdsoLayout
	for _, p := range pieces {
		r := Run{p.Start, p.End}
		if p.Path == "[vdso]" {
			l.code = r
			continue
		}
		if l.data.End == 0 {
			l.data.Start = r.Start
		}
		l.data.End = r.End
	}
	return l
}

func (r Run) size() uint64 { return r.End - r.Start }

// alike says why this kernel's block l cannot take the dumped one's
// place, d, if it cannot: a layout that does not match, or, given the
// code of both vdsos, an entry point that is not at the same offset.
func (l vdsoLayout) alike(d vdsoLayout, dumped, kernel []byte) error {
	if err := l.matches(d); err != nil {
		return err
	}
	if dumped == nil || kernel == nil || bytes.Equal(dumped, kernel) {
		return nil
	}
	de, err := vdsoEntries(dumped)
	if err != nil {
		return fmt.Errorf("the dumped %w", err)
	}
	ke, err := vdsoEntries(kernel)
	if err != nil {
		return fmt.Errorf("this kernel's %w", err)
	}
	return sameEntries(de, ke)
}

// matches says why the dumped layout d cannot take this kernel's block
// l, if it cannot.
func (l vdsoLayout) matches(d vdsoLayout) error {
	if d.code.size() != l.code.size() {
		return fmt.Errorf("dumped [vdso] %#x-%#x is %d bytes, this kernel's %d", d.code.Start, d.code.End, d.code.size(), l.code.size())
	}
	if d.data.size() != l.data.size() {
		return fmt.Errorf("dumped vvar %#x-%#x is %d bytes, this kernel's %d", d.data.Start, d.data.End, d.data.size(), l.data.size())
	}
	if d.data.size() != 0 && (d.code.Start < d.data.Start) != (l.code.Start < l.data.Start) {
		return fmt.Errorf("dumped [vdso] %#x and vvar %#x are in the other order than this kernel's", d.code.Start, d.data.Start)
	}
	return nil
}
