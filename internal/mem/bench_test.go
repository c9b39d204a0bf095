package mem

import (
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
