package mem

// The vdso of another kernel. A restore puts this kernel's vdso block
// where the dumped one was (planVdso) when the two are alike: the same
// sizes and every entry point at the same offset, so that the pointers
// into the dumped vdso that the task's C library keeps (glibc resolves
// them once, at start) land on the same functions. When they differ, as
// between two kernel versions, the restore builds a proxy, as CRIU's
// does: this kernel's block goes to a free place of the dumped layout,
// the dumped vdso's code is put back where it was, as plain memory, with
// a jump to this kernel's function at each of its entry points, and the
// dumped vvar's place gets zeroes, whose clock mode (none) sends a thread
// caught inside the old code to the system call.

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
	"amber/internal/proc"
)

// vdsoEntry is an entry point of a vdso: its offset from the start of
// the vdso and the size of its function.
type vdsoEntry struct{ off, size uint64 }

// vdsoEntries reads the function symbols of a vdso image (an ELF shared
// object as the kernel maps it) by name.
func vdsoEntries(code []byte) (map[string]vdsoEntry, error) {
	f, err := elf.NewFile(bytes.NewReader(code))
	if err != nil {
		return nil, fmt.Errorf("vdso: %w", err)
	}
	base, found := uint64(0), false
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			base, found = p.Vaddr, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("vdso: no PT_LOAD segment")
	}
	syms, err := f.DynamicSymbols()
	if err != nil {
		return nil, fmt.Errorf("vdso: %w", err)
	}
	out := map[string]vdsoEntry{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Section == elf.SHN_UNDEF || s.Value < base {
			continue
		}
		out[s.Name] = vdsoEntry{s.Value - base, s.Size}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("vdso: no function symbols")
	}
	return out, nil
}

// KernelVdso reads this kernel's vdso, as amber itself has it mapped.
func KernelVdso() ([]byte, error) {
	vmas, err := proc.ReadMaps(os.Getpid())
	if err != nil {
		return nil, err
	}
	for _, v := range vmas {
		if v.Path == "[vdso]" {
			f, err := os.Open("/proc/self/mem")
			if err != nil {
				return nil, fmt.Errorf("read this kernel's vdso: %w", err)
			}
			defer f.Close()
			b := make([]byte, v.Size())
			if _, err := f.ReadAt(b, int64(v.Start)); err != nil {
				return nil, fmt.Errorf("read this kernel's vdso at %#x: %w", v.Start, err)
			}
			return b, nil
		}
	}
	return nil, nil
}

// DumpedVdso reads the dumped task's [vdso] code from its pages image,
// nil if the images have no vdso or its pages are not in this image (a
// forked child may leave them to its parent's; a dump never leaves them
// to a pre-dump's or a lazy restore, being no private memory).
func DumpedVdso(vmas []*vma.VmaEntry, entries []*pagemap.PagemapEntry, pages io.ReaderAt) ([]byte, error) {
	code, err := vdsoOfImage(vmas)
	if err != nil || code.code.End == 0 {
		return nil, err
	}
	var off uint64
	for _, e := range entries {
		r := Run{e.GetVaddr(), e.GetVaddr() + NrPages(e)*pageSize}
		if e.GetFlags()&PEPresent == 0 {
			continue
		}
		if r.Start <= code.code.Start && code.code.End <= r.End {
			b := make([]byte, code.code.size())
			if _, err := pages.ReadAt(b, int64(off+code.code.Start-r.Start)); err != nil {
				return nil, fmt.Errorf("read the dumped vdso: %w", err)
			}
			return b, nil
		}
		off += r.End - r.Start
	}
	return nil, nil
}

// sameEntries says why a vdso with entries k cannot stand in for one
// with entries d at the same place, if it cannot: an entry point of d
// that k lacks or has elsewhere.
func sameEntries(d, k map[string]vdsoEntry) error {
	for _, name := range slices.Sorted(maps.Keys(d)) {
		ke, ok := k[name]
		if !ok {
			return fmt.Errorf("this kernel's vdso has no %s", name)
		}
		if ke.off != d[name].off {
			return fmt.Errorf("%s is at %#x in the dumped vdso, at %#x in this kernel's", name, d[name].off, ke.off)
		}
	}
	return nil
}

// jumpSize is the size of the jump patched at each entry point of the
// dumped vdso: movabs $target, %rax; jmp *%rax.
const jumpSize = 12

// patchedVdso returns the dumped vdso's code with each entry point
// jumping to this kernel's function of the same name, at kernelCode,
// and the names it had no such function for: those return -ENOSYS.
func patchedVdso(dumped []byte, d, k map[string]vdsoEntry, kernelCode uint64) ([]byte, []string, error) {
	out := slices.Clone(dumped)
	var missing []string
	for _, name := range slices.Sorted(maps.Keys(d)) {
		e := d[name]
		if e.size != 0 && e.size < jumpSize || e.off+jumpSize > uint64(len(out)) {
			return nil, nil, fmt.Errorf("vdso: %s of the dumped vdso (%d bytes at %#x) has no room for a jump", name, e.size, e.off)
		}
		at := out[e.off:]
		ke, ok := k[name]
		if !ok {
			// mov $-ENOSYS, %rax; ret
			copy(at, []byte{0x48, 0xc7, 0xc0, 0xda, 0xff, 0xff, 0xff, 0xc3})
			missing = append(missing, name)
			continue
		}
		at[0], at[1] = 0x48, 0xb8
		binary.LittleEndian.PutUint64(at[2:], kernelCode+ke.off)
		at[10], at[11] = 0xff, 0xe0
	}
	return out, uniqueNames(missing, d), nil
}

// uniqueNames drops from names those that alias another entry of d
// at the same offset (clock_gettime and __vdso_clock_gettime): one is
// said for both.
func uniqueNames(names []string, d map[string]vdsoEntry) []string {
	var out []string
	seen := map[uint64]bool{}
	for _, n := range names {
		if !seen[d[n].off] {
			seen[d[n].off] = true
			out = append(out, strings.TrimPrefix(n, "__vdso_"))
		}
	}
	return out
}

// proxyPlace finds where this kernel's vdso block, size bytes, goes when
// the dumped vdso keeps its place: the highest free range of the dumped
// layout below its vdso (the mmap area grows down), with a megabyte free
// on either side so that no stack or heap growing into it meets it, and
// out of the scratch area.
func proxyPlace(vmas []*vma.VmaEntry, scratch Run, below, size uint64) (uint64, error) {
	const margin = 1 << 20
	taken := []Run{scratch}
	for _, v := range vmas {
		taken = append(taken, Run{v.GetStart(), v.GetEnd()})
	}
	lo, hi := uint64(1<<32), min(below, TaskSize)
	free := complement(taken, lo, hi)
	for i := len(free) - 1; i >= 0; i-- {
		f := Run{max(free[i].Start, lo), min(free[i].End, hi)}
		if f.End > f.Start && f.size() >= size+2*margin {
			return f.End - margin - size, nil
		}
	}
	return 0, fmt.Errorf("vdso: no free %d bytes in the dumped layout for this kernel's vdso", size)
}

// planVdsoProxy plans the proxy: this kernel's block (parked at the
// scratch area's park, bs its start there) moves to a free place, the
// dumped vdso's code (dumpedCode), patched, moves out of the scratch data
// to where it was, and the dumped vvar's place is mapped with zeroes.
func planVdsoProxy(b *plan.Builder, in *RestoreInput, pieces []proc.VMA, bs uint64, dumped, here vdsoLayout, dumpedCode []byte) ([]string, error) {
	d, err := vdsoEntries(dumpedCode)
	if err != nil {
		return nil, fmt.Errorf("the dumped %w", err)
	}
	k, err := vdsoEntries(in.KernelVdso)
	if err != nil {
		return nil, fmt.Errorf("this kernel's %w", err)
	}
	size := pieces[len(pieces)-1].End - bs
	below := dumped.code.Start
	if dumped.data.size() != 0 {
		below = min(below, dumped.data.Start)
	}
	to, err := proxyPlace(in.MM.GetVmas(), in.Scratch, below, size)
	if err != nil {
		return nil, err
	}
	code, missing, err := patchedVdso(dumpedCode, d, k, to+(here.code.Start-bs))
	if err != nil {
		return nil, err
	}
	for _, p := range pieces {
		b.Call(fmt.Sprintf("move this kernel's %s to %#x", p.Path, to+(p.Start-bs)), unix.SYS_MREMAP,
			b.Park()+(p.Start-bs), p.Size(), p.Size(), unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, to+(p.Start-bs))
	}
	at := b.PageBytes(code)
	b.Call(fmt.Sprintf("move the dumped [vdso], its entry points patched, to %#x", dumped.code.Start), unix.SYS_MREMAP,
		at, uint64(len(code)), uint64(len(code)), unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, dumped.code.Start)
	b.Call("protect the dumped [vdso]", unix.SYS_MPROTECT, dumped.code.Start, dumped.code.size(), unix.PROT_READ|unix.PROT_EXEC)
	if dumped.data.size() != 0 {
		b.Call("zeroes where the dumped vvar was", unix.SYS_MMAP, dumped.data.Start, dumped.data.size(),
			unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED, ^uint64(0), 0)
	}
	return missing, nil
}
