package dump

import (
	"math/rand"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"amber/internal/proc"
)

const testPage = 4096

// The protection and flags of the parasite's scratch area.
var (
	scratchProt  = unix.PROT_READ | unix.PROT_WRITE | unix.PROT_EXEC
	scratchFlags = []string{"rd", "wr", "ex", "mr", "mw", "me"}
)

// randomLayout makes n sorted VMAs, anonymous or file-backed, some
// adjacent, some apart, with flags to tell them by.
func randomLayout(rng *rand.Rand, n int) []proc.VMA {
	var vmas []proc.VMA
	at := uint64(0x10000) * testPage
	for i := range n {
		if rng.Intn(2) == 0 {
			at += uint64(1+rng.Intn(8)) * testPage
		}
		size := uint64(1+rng.Intn(16)) * testPage
		v := proc.VMA{Start: at, End: at + size, Prot: unix.PROT_READ | unix.PROT_WRITE, VmFlags: []string{"rd", "wr", string(rune('a' + i%26))}}
		switch rng.Intn(3) {
		case 0:
			v.Path, v.Inode, v.Offset, v.Major = "/lib/x.so", uint64(100+i), uint64(rng.Intn(4))*testPage, 8
		case 1:
			// As the scratch area: they may merge.
			v.Prot, v.VmFlags = scratchProt, slices.Clone(scratchFlags)
		}
		v.SharedRss = uint64(rng.Intn(2)) * testPage
		vmas = append(vmas, v)
		at += size
	}
	return vmas
}

// seenWith is vmas as smaps shows them with the scratch area s mapped in
// the gap after vmas[i]: alone, or merged with an anonymous neighbour of
// the same flags that touches it, as the kernel merges, counting the
// pages of both.
func seenWith(vmas []proc.VMA, i int, s proc.VMA) []proc.VMA {
	out := slices.Clone(vmas[:i+1])
	merges := func(v proc.VMA) bool { return v.Path == "" && slices.Equal(v.VmFlags, scratchFlags) }
	left := &out[i]
	if left.End == s.Start && merges(*left) {
		left.End = s.End
	} else {
		out = append(out, s)
	}
	rest := slices.Clone(vmas[i+1:])
	if len(rest) > 0 && rest[0].Start == s.End && merges(rest[0]) {
		last := &out[len(out)-1]
		last.End, last.SharedRss = rest[0].End, last.SharedRss+rest[0].SharedRss
		rest = rest[1:]
	}
	return append(out, rest...)
}

// TestCutScratch places the parasite's scratch area in random gaps of
// random layouts, alone or merged with its neighbours, and requires the
// layout without it to be the one before, flags and counts kept.
func TestCutScratch(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	merged := 0
	for round := range 2000 {
		vmas := randomLayout(rng, 2+rng.Intn(30))
		i := rng.Intn(len(vmas))
		gapEnd := uint64(1 << 47)
		if i+1 < len(vmas) {
			gapEnd = vmas[i+1].Start
		}
		if gapEnd == vmas[i].End {
			continue
		}
		gap := (gapEnd - vmas[i].End) / testPage
		// Touching the left neighbour, the right one, both, or neither.
		startOff := uint64(rng.Intn(2)) * uint64(rng.Intn(int(gap)))
		size := gap - startOff
		if rng.Intn(2) == 0 && size > 1 {
			size = 1 + uint64(rng.Intn(int(size-1)))
		}
		s := proc.VMA{Start: vmas[i].End + startOff*testPage, Prot: scratchProt, VmFlags: scratchFlags}
		s.End = s.Start + size*testPage
		seen := seenWith(vmas, i, s)
		if len(seen) <= len(vmas) {
			merged++
		}
		got := cutVMA(seen, s)
		if !sameLayout(got, vmas) {
			t.Fatalf("round %d: scratch %#x-%#x after VMA %d:\nseen %+v\ngot  %+v\nwant %+v", round, s.Start, s.End, i, seen, got, vmas)
		}
		// A part of a merged VMA counts the shared pages of the whole:
		// never fewer than its own (MappedAlone must not take it for
		// alone when it is not).
		for j := range got {
			if !slices.Equal(got[j].VmFlags, vmas[j].VmFlags) || got[j].SharedRss < vmas[j].SharedRss {
				t.Fatalf("round %d: VMA %d lost its smaps fields: %+v, want %+v", round, j, got[j], vmas[j])
			}
		}
	}
	if merged == 0 {
		t.Fatal("no layout merged the scratch area with a neighbour: the test tests nothing")
	}
}

// TestSameLayoutChanges requires sameLayout to see a VMA grown, moved,
// reprotected or of another file.
func TestSameLayoutChanges(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	vmas := randomLayout(rng, 10)
	if !sameLayout(vmas, slices.Clone(vmas)) {
		t.Fatal("a layout differs from its copy")
	}
	for _, change := range []func(v *proc.VMA){
		func(v *proc.VMA) { v.Start -= testPage },
		func(v *proc.VMA) { v.End += testPage },
		func(v *proc.VMA) { v.Prot = unix.PROT_NONE },
		func(v *proc.VMA) { v.Inode++ },
		func(v *proc.VMA) { v.Offset += testPage },
		func(v *proc.VMA) { v.Shared = !v.Shared },
	} {
		other := slices.Clone(vmas)
		change(&other[5])
		if sameLayout(vmas, other) {
			t.Fatalf("a change of %+v to %+v went unseen", vmas[5], other[5])
		}
	}
	if sameLayout(vmas, vmas[1:]) {
		t.Fatal("a VMA fewer went unseen")
	}
}
