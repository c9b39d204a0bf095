package mem

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// BenchmarkPlanRestore10kVMAs plans the memory of a task with 10,000
// one-page VMAs of alternating protections, each with its page saved: the
// planning part of restoring the vma10k bench workload.
func BenchmarkPlanRestore10kVMAs(b *testing.B) {
	const n = 10000
	base := uint64(0x7f0000000000)
	var vmas []*vma.VmaEntry
	var pm []*pagemap.PagemapEntry
	for i := uint64(0); i < n; i++ {
		prot := unix.PROT_READ | unix.PROT_WRITE
		if i%2 == 1 {
			prot = unix.PROT_READ
		}
		vmas = append(vmas, anonVMA(base+i*pageSize, 1, prot))
		pm = append(pm, present(base+i*pageSize, 1))
	}
	in := memInput(vmas, pm)
	b.ReportAllocs()
	for b.Loop() {
		pb := plan.NewBuilder(0x100000000, 0)
		if err := PlanRestore(pb, in); err != nil {
			b.Fatal(err)
		}
		pb.Finish()
	}
}

// BenchmarkPlanRestoreChain plans the lazy restore of a 1 GiB task from
// a chain of eight dumps, as amber migrate's destination restores a
// pre-copy of a process writing random pages: the first holds every
// page, the next ones fewer and fewer scattered pages (25,000 down to
// 500), each leaving the rest to the one before.
func BenchmarkPlanRestoreChain(b *testing.B) {
	const pages = 1 << 18
	base := uint64(0x7f0000000000)
	vmas := []*vma.VmaEntry{anonVMA(base, pages, unix.PROT_READ|unix.PROT_WRITE)}
	rnd := rand.New(rand.NewPCG(1, 2))
	layer := func(n int) []*pagemap.PagemapEntry {
		var at []uint64
		for range n {
			at = append(at, base+uint64(rnd.IntN(pages))*pageSize)
		}
		slices.Sort(at)
		var written []Run
		for _, a := range slices.Compact(at) {
			written = appendRun(written, Run{a, a + pageSize})
		}
		return pagemapEntries(written, subtractRuns([]Run{{base, base + pages*pageSize}}, written))
	}
	parents := []PagesLayer{{Pagemap: []*pagemap.PagemapEntry{present(base, pages)}}}
	for _, n := range []int{25000, 4000, 1500, 800, 500, 500, 500} {
		parents = append([]PagesLayer{{Pagemap: layer(n)}}, parents...)
	}
	in := memInput(vmas, layer(500))
	in.Parents = parents
	b.ReportAllocs()
	for b.Loop() {
		in.Lazy = &LazyPages{}
		pb := plan.NewBuilder(0x100000000, 0)
		if err := PlanRestore(pb, in); err != nil {
			b.Fatal(err)
		}
		pb.Finish()
	}
}
