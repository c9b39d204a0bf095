package mem

import (
	"slices"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
	"amber/internal/proc"
)

const hugePage = 2 << 20

// hugeVMA is the entry dump makes of an anonymous hugetlb mapping of
// pages huge pages; a shared one maps object ino at pgoff.
func hugeVMA(start, pages uint64, prot int, shared bool, ino, pgoff uint64) *vma.VmaEntry {
	v := proc.VMA{Start: start, End: start + pages*hugePage, Prot: prot, Shared: shared, Offset: pgoff,
		Minor: 0x11, Inode: ino, Path: anonHugetlbPath, Deleted: true, KernelPageSize: hugePage,
		VmFlags: []string{"rd", "wr", "mr", "mw", "me", "de", "ht"}}
	out, err := Entries([]proc.VMA{v}, nil)
	if err != nil {
		panic(err)
	}
	return out[0]
}

// TestKeptVMAsForkFlags: a child keeps what fork gives it as it is, but
// not a MAP_LOCKED mapping (fork clears VM_LOCKED in the child) nor
// private hugetlb memory; shared hugetlb memory is kept like shmem.
func TestKeptVMAsForkFlags(t *testing.T) {
	locked := anonVMA(0x1000_0000, 2, rw)
	locked.Flags = proto.Uint32(locked.GetFlags() | unix.MAP_LOCKED)
	vmas := []*vma.VmaEntry{
		anonVMA(0x0800_0000, 2, rw),
		locked,
		hugeVMA(0x4000_0000, 2, rw, false, 9, 0),
		hugeVMA(0x8000_0000, 2, rw, true, 10, 0),
	}
	in := &RestoreInput{MM: &mm.MmEntry{Vmas: vmas}, Parent: &Parent{MM: &mm.MmEntry{Vmas: vmas}}}
	if got, want := keptVMAs(in), []bool{true, false, false, true}; !slices.Equal(got, want) {
		t.Errorf("kept %v, want %v (plain, locked, private hugetlb, shared hugetlb)", got, want)
	}
}

// TestPlanHugetlbPrivate: private hugetlb memory is mapped alone with
// MAP_HUGETLB and its page size, then filled from the pages image.
func TestPlanHugetlbPrivate(t *testing.T) {
	const a = 0x4000_0000
	vmas := append([]*vma.VmaEntry{anonVMA(a-2*page, 2, rw), hugeVMA(a, 2, rw, false, 9, 0)}, dumpedVdso(dumpVdso)...)
	in := memInput(vmas, nil)
	in.Pagemap = append(in.Pagemap, present(a, 1), present(a+hugePage+hugePage/2, 2))
	s, p := planMem(t, in)
	checkLayout(t, s, in)
	var mapped bool
	for _, c := range p.Calls {
		if c.Nr == unix.SYS_MMAP && c.Args[0] == a {
			mapped = c.Args[1] == 2*hugePage && c.Args[3]&hugetlbMask == huge2M
		}
	}
	if !mapped {
		t.Errorf("hugetlb area not mapped alone with MAP_HUGETLB|MAP_HUGE_2MB:\n%s", p)
	}
	want := []fill{{a, page, 0}, {a + hugePage + hugePage/2, 2 * page, page}}
	if !slices.Equal(s.fills, want) {
		t.Errorf("fills %x, want %x", s.fills, want)
	}
}

// TestPlanHugetlbSharedAside: a hugetlb object split in two mappings is
// created aside, at an address aligned to its huge page size and with
// MAP_HUGETLB and the size, then mapped from its file at both offsets.
func TestPlanHugetlbSharedAside(t *testing.T) {
	const a = 0x4000_0000
	vmas := []*vma.VmaEntry{hugeVMA(a, 1, rw, true, 77, 0), hugeVMA(a+hugePage, 1, ro, true, 77, hugePage)}
	vmas = append(vmas, dumpedVdso(dumpVdso)...)
	in := memInput(vmas, nil)
	obj := shmemObject(77, 2*hugePage/page, testPid, Run{a, a + hugePage}, present(0, 1), present(hugePage, 1))
	obj.Hugetlb = huge2M
	in.Shmem = map[uint64]*Shmem{77: obj}
	// A mapping of the stub at the floor of the scratch search puts the
	// first hole at an address that is not huge page aligned.
	in.Current = append(in.Current, proc.VMA{Start: scratchFloor, End: scratchFloor + 3*page, Prot: rw})
	s, p := planShared(t, in, nil)
	created := createCalls(p)
	if len(created) != 1 {
		t.Fatalf("%d mmaps create the object, want 1:\n%s", len(created), p)
	}
	if c := created[0]; c.Args[0]%hugePage != 0 || c.Args[3]&hugetlbMask != huge2M {
		t.Errorf("object created at %#x with flags %#x: want a 2 MiB aligned address and MAP_HUGETLB|MAP_HUGE_2MB", c.Args[0], c.Args[3])
	}
	name := segAt(t, s, a).what
	if g := segAt(t, s, a+hugePage); g.what != name || g.off != hugePage || g.prot != ro {
		t.Errorf("second mapping %v, want %s at offset 2 MiB, read-only", g, name)
	}
	want := []objFill{{shmImg, 0, page, 0}, {shmImg, hugePage, page, page}}
	if !slices.Equal(s.shm.fills[name], want) {
		t.Errorf("object filled with %v, want %v", s.shm.fills[name], want)
	}
	checkFdsClosed(t, s)
}

// createCalls are the mmaps of a plan that make anonymous shared memory.
func createCalls(p *plan.Program) []plan.Call {
	var out []plan.Call
	for _, c := range p.Calls {
		if c.Nr == unix.SYS_MMAP && c.Args[3]&(unix.MAP_SHARED|unix.MAP_ANONYMOUS) == unix.MAP_SHARED|unix.MAP_ANONYMOUS {
			out = append(out, c)
		}
	}
	return out
}
