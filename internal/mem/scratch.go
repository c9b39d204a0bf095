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
	byStart := func(a, b span) int { return cmpU64(a.start, b.start) }
	// Both lists come sorted: merging them spares sorting tens of
	// thousands of spans. Images out of order are sorted all the same.
	used := make([]span, 0, len(target)+len(current))
	for i, j := 0, 0; i < len(target) || j < len(current); {
		if j == len(current) || i < len(target) && target[i].GetStart() <= current[j].Start {
			used = append(used, span{target[i].GetStart(), target[i].GetEnd()})
			i++
		} else {
			used = append(used, span{current[j].Start, current[j].End})
			j++
		}
	}
	if !slices.IsSortedFunc(used, byStart) {
		slices.SortFunc(used, byStart)
	}
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
