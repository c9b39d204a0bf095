package mem

import (
	"fmt"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"

	"amber/internal/proc"
)

// scratchFloor keeps the scratch area out of the low addresses that
// non-PIE binaries and mmap_min_addr use.
const scratchFloor = 1 << 32

// scratchMargin separates the scratch area from any mapping, so that a
// growsdown stack above it keeps its guard gap.
const scratchMargin = 2 << 20

// ScratchBase picks an address for a scratch area of size bytes that lies
// in a hole both of the dumped layout and of the new task's current one.
func ScratchBase(target []*vma.VmaEntry, current []proc.VMA, size uint64) (uint64, error) {
	type span struct{ start, end uint64 }
	var used []span
	for _, v := range target {
		used = append(used, span{v.GetStart(), v.GetEnd()})
	}
	for _, v := range current {
		used = append(used, span{v.Start, v.End})
	}
	slices.SortFunc(used, func(a, b span) int {
		switch {
		case a.start < b.start:
			return -1
		case a.start > b.start:
			return 1
		}
		return 0
	})
	addr := uint64(scratchFloor)
	for _, u := range used {
		if u.end+scratchMargin <= addr {
			continue
		}
		if u.start >= addr+size+scratchMargin {
			break
		}
		addr = (u.end + scratchMargin + pageSize - 1) &^ (pageSize - 1)
	}
	if addr+size > TaskSize {
		return 0, fmt.Errorf("no hole of %d bytes for the restore scratch area", size)
	}
	return addr, nil
}
