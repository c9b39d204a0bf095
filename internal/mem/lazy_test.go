package mem

import (
	"slices"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

// A lazy restore fills file-backed private pages and the page of an
// rseq area, and leaves every other page of private anonymous memory to
// the daemon, with where each sits in the pages image; it registers the
// anonymous VMAs, adjacent ones as one area.
func TestPlanRestoreLazy(t *testing.T) {
	vmas := []*vma.VmaEntry{
		fileVMA(0x40_0000, 2, rw, 7, 0, false),
		anonVMA(0x50_0000, 4, rw),
		anonVMA(0x50_4000, 2, ro),
		anonVMA(0x60_0000, 8, rw),
	}
	pm := []*pagemap.PagemapEntry{present(0x40_0000, 2), present(0x50_0000, 6), present(0x60_0000, 8)}
	in := memInput(vmas, pm)
	in.Lazy = &LazyPages{Eager: []uint64{0x60_3010}}
	s, _ := planMem(t, in)
	wantFills := []fill{{0x40_0000, 2 * page, 0}, {0x60_3000, page, 11 * page}}
	if !slices.Equal(s.fills, wantFills) {
		t.Errorf("filled %v, want %v", s.fills, wantFills)
	}
	wantRanges := []LazyRange{
		{0x50_0000, 0x50_4000, 0, 2 * page}, {0x50_4000, 0x50_6000, 0, 6 * page},
		{0x60_0000, 0x60_3000, 0, 8 * page}, {0x60_4000, 0x60_8000, 0, 12 * page},
	}
	if !slices.Equal(in.Lazy.Ranges, wantRanges) {
		t.Errorf("lazy ranges %x, want %x", in.Lazy.Ranges, wantRanges)
	}
	wantAreas := []Run{{0x50_0000, 0x50_6000}, {0x60_0000, 0x60_8000}}
	if !slices.Equal(in.Lazy.Areas, wantAreas) {
		t.Errorf("areas %x, want %x", in.Lazy.Areas, wantAreas)
	}
}

// TestPlanRestoreLazyDroppable: a MAP_DROPPABLE mapping, which
// userfaultfd refuses to register, is no lazy area, and the private
// anonymous memory beside it is one.
func TestPlanRestoreLazyDroppable(t *testing.T) {
	drop := anonVMA(0x50_0000, 4, rw)
	drop.Flags = proto.Uint32(drop.GetFlags() | unix.MAP_DROPPABLE)
	vmas := []*vma.VmaEntry{drop, anonVMA(0x60_0000, 2, rw)}
	in := memInput(vmas, []*pagemap.PagemapEntry{present(0x60_0000, 2)})
	in.Lazy = &LazyPages{}
	planMem(t, in)
	if want := []Run{{0x60_0000, 0x60_2000}}; !slices.Equal(in.Lazy.Areas, want) {
		t.Errorf("areas %x, want %x (not the droppable mapping)", in.Lazy.Areas, want)
	}
}

// Pages a dump --lazy-pages left at the source (PE_LAZY, not present)
// are the daemon's to fetch in a lazy restore; outside private anonymous
// memory they cannot be.
func TestPlanRestoreLazyRemote(t *testing.T) {
	e := present(0x50_0000, 2)
	e.Flags = proto.Uint32(PELazy)
	in := memInput([]*vma.VmaEntry{anonVMA(0x50_0000, 2, rw)}, []*pagemap.PagemapEntry{e})
	in.Lazy = &LazyPages{}
	s, _ := planMem(t, in)
	if len(s.fills) != 0 {
		t.Errorf("filled %v", s.fills)
	}
	if want := []LazyRange{{0x50_0000, 0x50_2000, -1, 0}}; !slices.Equal(in.Lazy.Ranges, want) {
		t.Errorf("lazy ranges %x, want %x", in.Lazy.Ranges, want)
	}
	in = memInput([]*vma.VmaEntry{fileVMA(0x50_0000, 2, rw, 7, 0, false)}, []*pagemap.PagemapEntry{e})
	in.Lazy = &LazyPages{}
	if err := PlanRestore(plan.NewBuilder(testScratch, 0), in); err == nil {
		t.Fatal("PE_LAZY pages of a file mapping planned")
	}
}

// A dump --lazy-pages leaves out what a lazy restore may bring in later
// (private anonymous memory, across adjacent VMAs) and copies the rest:
// file-backed pages and locked memory. Its pagemap entries say which.
func TestSplitLazyRuns(t *testing.T) {
	locked := anonVMA(0x70_0000, 2, rw)
	locked.Flags = proto.Uint32(locked.GetFlags() | 0x2000) // MAP_LOCKED
	vmas := []*vma.VmaEntry{
		fileVMA(0x40_0000, 2, rw, 7, 0, false),
		anonVMA(0x40_2000, 4, rw),
		anonVMA(0x40_6000, 2, ro),
		locked,
	}
	runs := []Run{{0x40_1000, 0x40_7000}, {0x70_0000, 0x70_1000}}
	copied, lazy := splitLazyRuns(runs, vmas)
	if want := []Run{{0x40_1000, 0x40_2000}, {0x70_0000, 0x70_1000}}; !slices.Equal(copied, want) {
		t.Errorf("copied %x, want %x", copied, want)
	}
	if want := []Run{{0x40_2000, 0x40_7000}}; !slices.Equal(lazy, want) {
		t.Errorf("lazy %x, want %x", lazy, want)
	}
	if e := lazyEntries(lazy); len(e) != 1 || e[0].GetFlags() != PELazy || e[0].GetNrPages() != 5 {
		t.Errorf("entries %v", e)
	}
}
