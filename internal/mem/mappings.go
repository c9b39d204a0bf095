package mem

// Recreating VMAs: anonymous runs, files opened once, shared memory.

import (
	"fmt"
	"math/bits"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

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
		case isSocketVMA(v):
			planSocketPlaceholder(b, v)
			mapped[i] = uint64(v.GetProt()) // PlanSocketMaps maps it with it
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

// MappedFiles lists the files.img ids of the regular files that vmas
// map (memfds aside), with repeats.
func MappedFiles(vmas []*vma.VmaEntry) []uint32 {
	var out []uint32
	for _, v := range vmas {
		if isFileVMA(v) {
			out = append(out, uint32(v.GetShmid()))
		}
	}
	return out
}

func isFileVMA(v *vma.VmaEntry) bool {
	return v.GetStatus()&(StatusFilePrivate|StatusFileShared) != 0 && v.GetStatus()&StatusMemfd == 0
}

func planMadvise(b *plan.Builder, v *vma.VmaEntry) {
	for m := v.GetMadv(); m != 0; m &= m - 1 {
		advice := bits.TrailingZeros64(m)
		b.Call("advise vma", unix.SYS_MADVISE, v.GetStart(), v.GetEnd()-v.GetStart(), uint64(advice))
	}
}
