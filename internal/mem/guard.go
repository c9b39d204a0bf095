package mem

import (
	"fmt"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

// Guard pages (MADV_GUARD_INSTALL, Linux 6.13) are no mapping of their
// own but markers in the page tables of one: touching one raises
// SIGSEGV. PAGEMAP_SCAN shows them (PAGE_IS_GUARD); they hold no data.
// CRIU's mm image records each range of them as an entry after the VMAs
// with only StatusGuard set, and its restore installs them last; amber
// writes and reads the same.

// madvGuardInstall is MADV_GUARD_INSTALL.
const madvGuardInstall = 102

// GuardEntries are the mm image entries of guard page ranges.
func GuardEntries(guards []Run) []*vma.VmaEntry {
	out := make([]*vma.VmaEntry, len(guards))
	for i, g := range guards {
		out[i] = &vma.VmaEntry{
			Start: proto.Uint64(g.Start), End: proto.Uint64(g.End), Pgoff: proto.Uint64(0), Shmid: proto.Uint64(0),
			Prot: proto.Uint32(0), Flags: proto.Uint32(0), Status: proto.Uint32(StatusGuard), Fd: proto.Int64(-1),
		}
	}
	return out
}

// SplitGuards takes the guard page entries out of an mm image's VMAs:
// the VMAs without them, and the ranges they guard.
func SplitGuards(vmas []*vma.VmaEntry) ([]*vma.VmaEntry, []Run) {
	var guards []Run
	vmas = slices.DeleteFunc(vmas, func(v *vma.VmaEntry) bool {
		if v.GetStatus()&StatusGuard == 0 {
			return false
		}
		guards = append(guards, Run{Start: v.GetStart(), End: v.GetEnd()})
		return true
	})
	return vmas, guards
}

// PlanGuards plans installing the guard pages again. Plan it once the
// process's children are forked: they would inherit guards that are not
// theirs, and before them only a parent's memory may differ.
func PlanGuards(b *plan.Builder, guards []Run) {
	for _, g := range guards {
		b.Call(fmt.Sprintf("guard pages %#x-%#x", g.Start, g.End), unix.SYS_MADVISE, g.Start, g.End-g.Start, madvGuardInstall)
	}
}
