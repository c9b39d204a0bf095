package mem

import (
	"math/rand/v2"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"

	"amber/internal/proc"
)

// checkScratch verifies that [base, base+size) is page aligned, above the
// floor, below TaskSize and at least scratchMargin away from every
// mapping of target and current.
func checkScratch(t *testing.T, base, size uint64, target []*vma.VmaEntry, current []proc.VMA) {
	t.Helper()
	if base%pageSize != 0 || base < scratchFloor || base+size > TaskSize {
		t.Errorf("scratch %#x+%#x: not aligned, below %#x or above TaskSize", base, size, scratchFloor)
	}
	lo, hi := base-scratchMargin, base+size+scratchMargin
	near := func(start, end uint64) bool { return start < hi && lo < end }
	for _, v := range target {
		if near(v.GetStart(), v.GetEnd()) {
			t.Errorf("scratch %#x-%#x within %#x of dumped VMA %#x-%#x", base, base+size, scratchMargin, v.GetStart(), v.GetEnd())
		}
	}
	for _, v := range current {
		if near(v.Start, v.End) {
			t.Errorf("scratch %#x-%#x within %#x of current VMA %#x-%#x", base, base+size, scratchMargin, v.Start, v.End)
		}
	}
}

func TestScratchBase(t *testing.T) {
	const floor, margin = scratchFloor, scratchMargin
	vsyscall := proc.VMA{Start: 0xffff_ffff_ff60_0000, End: 0xffff_ffff_ff60_1000, Path: "[vsyscall]"}
	cases := []struct {
		name    string
		target  []*vma.VmaEntry
		current []proc.VMA
		size    uint64
		want    uint64
	}{
		{"empty", nil, nil, 1 << 20, floor},
		{"mappings low only", []*vma.VmaEntry{anonVMA(0x40_0000, 16, rw)}, []proc.VMA{{Start: 0x1_0000, End: 0x2_0000}}, 1 << 20, floor},
		{"target on the floor", []*vma.VmaEntry{anonVMA(floor, 1, rw)}, nil, 1 << 20, floor + page + margin},
		{"current just under the floor", nil, []proc.VMA{{Start: floor - 2*page, End: floor - page}}, 1 << 20, floor - page + margin},
		{"margin below the floor kept", nil, []proc.VMA{{Start: floor - margin - page, End: floor - margin}}, 1 << 20, floor},
		{"hole too small by a page", []*vma.VmaEntry{anonVMA(floor, 1, rw), anonVMA(floor+page+2*margin+(1<<20)-page, 1, rw)}, nil, 1 << 20,
			floor + page + 2*margin + (1 << 20) + margin},
		{"hole exactly big enough", []*vma.VmaEntry{anonVMA(floor, 1, rw), anonVMA(floor+page+2*margin+(1<<20), 1, rw)}, nil, 1 << 20,
			floor + page + margin},
		{"target and current overlap", []*vma.VmaEntry{anonVMA(floor, 256, rw)}, []proc.VMA{{Start: floor + page, End: floor + 2*page}, {Start: floor + 300*page, End: floor + 301*page}}, 1 << 20,
			floor + 301*page + margin},
		{"unsorted current", nil, []proc.VMA{{Start: floor + 300*page, End: floor + 301*page}, {Start: floor, End: floor + page}}, 1 << 20,
			floor + 301*page + margin},
		{"vsyscall above TaskSize", nil, []proc.VMA{{Start: floor, End: floor + page}, vsyscall}, 1 << 20, floor + page + margin},
		{"unaligned end", nil, []proc.VMA{{Start: floor, End: floor + 100}}, page, floor + page + margin},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ScratchBase(c.target, c.current, c.size)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("ScratchBase = %#x, want %#x", got, c.want)
			}
			var cur []proc.VMA
			for _, v := range c.current {
				if v.End <= TaskSize {
					cur = append(cur, v)
				}
			}
			checkScratch(t, got, c.size, c.target, cur)
		})
	}
}

func TestScratchBaseNoHole(t *testing.T) {
	full := []*vma.VmaEntry{anonVMA(scratchFloor/2, (TaskSize-scratchFloor/2)/page, rw)}
	if b, err := ScratchBase(full, nil, page); err == nil {
		t.Errorf("ScratchBase = %#x with the whole space used", b)
	}
	top := []proc.VMA{{Start: scratchFloor, End: TaskSize - 1<<20}}
	if b, err := ScratchBase(nil, top, 4<<20); err == nil {
		t.Errorf("ScratchBase = %#x past TaskSize", b)
	}
}

func TestScratchBaseRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 300; i++ {
		var target []*vma.VmaEntry
		var current []proc.VMA
		at := uint64(scratchFloor) - 16*page
		for n := rng.IntN(40); n > 0; n-- {
			at += uint64(rng.IntN(1200)) * page
			l := uint64(1+rng.IntN(600)) * page
			if rng.IntN(2) == 0 {
				target = append(target, anonVMA(at, l/page, rw))
			} else {
				current = append(current, proc.VMA{Start: at, End: at + l})
			}
			if rng.IntN(3) == 0 {
				at += l // else the next one may overlap
			}
		}
		rng.Shuffle(len(current), func(i, j int) { current[i], current[j] = current[j], current[i] })
		size := uint64(1+rng.IntN(2000)) * page
		base, err := ScratchBase(target, current, size)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		checkScratch(t, base, size, target, current)
		if t.Failed() {
			t.Fatalf("case %d: target %d VMAs, current %v, size %#x", i, len(target), current, size)
		}
	}
}
