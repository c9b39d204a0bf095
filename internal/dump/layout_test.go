package dump

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"amber/internal/proc"
)

// randomLayout makes n sorted mappings with random gaps between them,
// anonymous or of a file, each with VmFlags and page counts of its own.
func randomLayout(rnd *rand.Rand, n int) []proc.VMA {
	var out []proc.VMA
	at := uint64(0x10000) << 12
	flags := [][]string{{"rd", "wr", "mr", "mw", "me", "ac"}, {"rd", "ex", "mr", "mw", "me"}, {"rd", "wr", "mr", "mw", "me", "dc"},
		{"rd", "wr", "mr", "mw", "me", "hg"}, {"rd", "wr", "mr", "mw", "me", "uw"}}
	for range n {
		at += uint64(rnd.IntN(3)) << 12 // 0: adjacent to the one before
		size := uint64(1+rnd.IntN(8)) << 12
		v := proc.VMA{Start: at, End: at + size, Prot: []int{unix.PROT_READ, unix.PROT_READ | unix.PROT_WRITE,
			unix.PROT_READ | unix.PROT_EXEC, unix.PROT_READ | unix.PROT_WRITE | unix.PROT_EXEC}[rnd.IntN(4)],
			VmFlags: flags[rnd.IntN(len(flags))], SharedRss: uint64(rnd.IntN(2)) << 12, Swap: uint64(rnd.IntN(2)) << 12}
		if rnd.IntN(3) == 0 {
			v.Major, v.Minor, v.Inode, v.Path = 8, 1, uint64(100+rnd.IntN(3)), fmt.Sprintf("/lib/f%d", rnd.IntN(3))
			v.Offset = uint64(rnd.IntN(16)) << 12
		}
		out = append(out, v)
		at += size
	}
	return out
}

// mapsOf is what maps shows of smaps mappings: no VmFlags, no counts.
func mapsOf(vmas []proc.VMA) []proc.VMA {
	out := slices.Clone(vmas)
	for i := range out {
		out[i].VmFlags, out[i].SharedRss, out[i].Swap = nil, 0, 0
	}
	return out
}

// mergeable says whether the kernel could merge an anonymous private
// rwx scratch mapping with v: an anonymous private rwx mapping.
func mergeable(v proc.VMA) bool {
	return v.Inode == 0 && !v.Shared && v.Prot == unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC
}

// withScratch is what smaps may show once the parasite's scratch
// [start, end) is mapped: merged with the mappings around it that it
// touches and could merge with, or on its own.
func withScratch(vmas []proc.VMA, start, end uint64) []proc.VMA {
	scratch := proc.VMA{Start: start, End: end, Prot: unix.PROT_READ | unix.PROT_WRITE | unix.PROT_EXEC,
		VmFlags: []string{"rd", "wr", "ex", "mr", "mw", "me", "ac"}}
	var out []proc.VMA
	i := 0
	for i < len(vmas) && vmas[i].End <= start {
		out = append(out, vmas[i])
		i++
	}
	if n := len(out); n > 0 && out[n-1].End == start && mergeable(out[n-1]) {
		scratch.Start, scratch.VmFlags, scratch.SharedRss, scratch.Swap = out[n-1].Start, out[n-1].VmFlags, out[n-1].SharedRss, out[n-1].Swap
		out = out[:n-1]
	}
	if i < len(vmas) && vmas[i].Start == end && mergeable(vmas[i]) &&
		(scratch.Start == start || slices.Equal(scratch.VmFlags, vmas[i].VmFlags)) {
		scratch.End, scratch.VmFlags = vmas[i].End, vmas[i].VmFlags
		scratch.SharedRss += vmas[i].SharedRss
		scratch.Swap += vmas[i].Swap
		i++
	}
	out = append(out, scratch)
	return append(out, vmas[i:]...)
}

// gaps lists the free ranges between the mappings, the scratch's places.
func gaps(vmas []proc.VMA) [][2]uint64 {
	var out [][2]uint64
	for i := 1; i < len(vmas); i++ {
		if vmas[i].Start > vmas[i-1].End {
			out = append(out, [2]uint64{vmas[i-1].End, vmas[i].Start})
		}
	}
	return out
}

// TestJoinLayout checks joinLayout over random layouts with the
// parasite's scratch in a random gap, smaps read before or after it was
// mapped (on its own, or merged with the mappings around it): the
// mappings come back as they were, with their own VmFlags. The
// scratch fills its gap whole or in part, at either end.
func TestJoinLayout(t *testing.T) {
	rnd := rand.New(rand.NewPCG(13, 50))
	merged := 0
	for round := range 3000 {
		vmas := randomLayout(rnd, 2+rnd.IntN(12))
		if round%3 == 0 {
			// Runs of anonymous rwx mappings of equal flags, which the
			// scratch may merge with on both sides.
			for i := range vmas {
				if rnd.IntN(2) == 0 {
					vmas[i].Major, vmas[i].Minor, vmas[i].Inode, vmas[i].Path, vmas[i].Offset = 0, 0, 0, "", 0
					vmas[i].Prot, vmas[i].VmFlags = unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC, []string{"rd", "wr", "ex", "mr", "mw", "me", "ac"}
				}
			}
		}
		maps := mapsOf(vmas)
		gs := gaps(vmas)
		if len(gs) == 0 {
			continue
		}
		g := gs[rnd.IntN(len(gs))]
		pages := (g[1] - g[0]) >> 12
		size := uint64(1+rnd.IntN(int(pages))) << 12
		start := g[0]
		if rnd.IntN(2) == 0 {
			start = g[1] - size
		}
		end := start + size
		smaps := vmas
		if rnd.IntN(4) != 0 {
			smaps = withScratch(vmas, start, end)
			if len(smaps) < len(vmas)+1 {
				merged++
			}
		}
		got, err := joinLayout(smaps, maps, start, end)
		if err != nil {
			t.Fatalf("round %d: scratch %x-%x: %v\nlayout %v\nsmaps %v", round, start, end, err, vmas, smaps)
		}
		for i := range vmas {
			if !sameMapping(got[i], vmas[i]) || !slices.Equal(got[i].VmFlags, vmas[i].VmFlags) {
				t.Fatalf("round %d: scratch %x-%x: mapping %d is %+v, want %+v", round, start, end, i, got[i], vmas[i])
			}
		}
	}
	if merged < 100 {
		t.Fatalf("only %d rounds merged the scratch with a neighbour", merged)
	}
}

// TestJoinLayoutChanged checks that a layout that differs from maps
// other than by the scratch is refused, naming the mapping.
func TestJoinLayoutChanged(t *testing.T) {
	rnd := rand.New(rand.NewPCG(13, 51))
	for round := range 500 {
		vmas := randomLayout(rnd, 2+rnd.IntN(12))
		maps := mapsOf(vmas)
		smaps := changeLayout(rnd, slices.Clone(vmas))
		_, err := joinLayout(smaps, maps, 0, 0)
		if err == nil || !strings.Contains(err.Error(), "the layout changed while frozen") {
			t.Fatalf("round %d: %v, want a changed layout refused", round, err)
		}
	}
}

// changeLayout changes one mapping of vmas at random as a process could:
// mprotect, a shrunk or grown mapping (munmap of its end, mremap, brk),
// an unmapped one, another file, a new one.
func changeLayout(rnd *rand.Rand, vmas []proc.VMA) []proc.VMA {
	i := rnd.IntN(len(vmas))
	switch rnd.IntN(6) {
	case 0:
		vmas[i].Prot ^= unix.PROT_WRITE
	case 1:
		vmas[i].End -= 1 << 12
		if vmas[i].End == vmas[i].Start {
			vmas = slices.Delete(vmas, i, i+1)
		}
	case 2:
		vmas = slices.Delete(vmas, i, i+1)
	case 3:
		vmas[i].Inode++
	case 4:
		last := vmas[len(vmas)-1]
		vmas = append(vmas, proc.VMA{Start: last.End + 1<<12, End: last.End + 2<<12})
	case 5:
		vmas[len(vmas)-1].End += 1 << 12
	}
	return vmas
}

// TestReuseLayout checks that the smaps of the dump before serve only a
// layout that maps shows unchanged, over random layouts and random
// changes (mprotect, munmap of a part or a whole mapping, mremap,
// another file, a new mapping, a grown heap).
func TestReuseLayout(t *testing.T) {
	rnd := rand.New(rand.NewPCG(13, 52))
	for round := range 2000 {
		learnt := randomLayout(rnd, 1+rnd.IntN(12))
		got, ok := reuseLayout(learnt, mapsOf(learnt))
		if !ok {
			t.Fatalf("round %d: an unchanged layout not reused", round)
		}
		for i := range learnt {
			if !sameMapping(got[i], learnt[i]) || !slices.Equal(got[i].VmFlags, learnt[i].VmFlags) ||
				got[i].SharedRss != learnt[i].SharedRss || got[i].Swap != learnt[i].Swap {
				t.Fatalf("round %d: mapping %d is %+v, want %+v", round, i, got[i], learnt[i])
			}
		}
		changed := changeLayout(rnd, slices.Clone(learnt))
		if _, ok := reuseLayout(learnt, mapsOf(changed)); ok {
			t.Fatalf("round %d: a changed layout reused:\n%v\n%v", round, learnt, changed)
		}
	}
	if _, ok := reuseLayout(nil, nil); ok {
		t.Fatal("no layout learnt, yet one reused")
	}
}

// TestSameFlags checks the check of a reused layout: VmFlags that a
// madvise or mlock of a whole mapping changed are refused, naming the
// mapping; userfaultfd's flags (a tracking dump's registration) and
// soft-dirty's (cleared by a tracking dump) are not a change.
func TestSameFlags(t *testing.T) {
	dumped := []proc.VMA{{Start: 0x1000, End: 0x3000, VmFlags: []string{"rd", "wr", "mr", "mw", "me", "ac"}},
		{Start: 0x5000, End: 0x6000, Path: "[heap]", VmFlags: []string{"rd", "wr", "mr", "mw", "me", "ac", "uw"}}}
	for _, c := range []struct {
		name  string
		flags [2][]string
		bad   string
	}{
		{"same", [2][]string{dumped[0].VmFlags, dumped[1].VmFlags}, ""},
		{"registered since", [2][]string{{"rd", "wr", "mr", "mw", "me", "ac", "uw"}, {"rd", "wr", "mr", "mw", "me", "ac"}}, ""},
		{"soft-dirty bits cleared since", [2][]string{dumped[0].VmFlags, {"rd", "wr", "mr", "mw", "me", "ac", "sd", "uw"}}, ""},
		{"MADV_DONTFORK", [2][]string{dumped[0].VmFlags, {"rd", "wr", "mr", "mw", "me", "dc", "ac", "uw"}}, "5000-6000 [heap]"},
		{"mlock", [2][]string{{"rd", "wr", "mr", "mw", "me", "lo", "ac"}, dumped[1].VmFlags}, "1000-3000"},
		{"MADV_NOHUGEPAGE undone", [2][]string{dumped[0].VmFlags[:5], dumped[1].VmFlags}, "1000-3000"},
	} {
		now := slices.Clone(dumped)
		now[0].VmFlags, now[1].VmFlags = c.flags[0], c.flags[1]
		err := sameFlags(now, dumped)
		if c.bad == "" && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if c.bad != "" && (err == nil || !strings.Contains(err.Error(), "mapping "+c.bad+" has VmFlags")) {
			t.Errorf("%s: %v, want %s refused", c.name, err, c.bad)
		}
	}
}
