package mem

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// fillLayoutBase is where the random layouts start: clear of the stub's
// mappings, the vdso and the test scratch area.
const fillLayoutBase = 0x7e00_0000_0000

// randomFillLayout builds a layout of random VMAs (anonymous read-write,
// read-only and PROT_NONE, private and shared file mappings, with gaps or
// adjacent), the vdso block, and a pagemap of random runs of present pages in the private
// ones, entries crossing VMA boundaries where the pages run on, as the
// dump writes them. Some layouts hold tens of MiB, enough for several
// filling threads. It returns the pages by address with their offset in
// the pages image.
func randomFillLayout(rnd *rand.Rand) ([]*vma.VmaEntry, []*pagemap.PagemapEntry, map[uint64]uint64) {
	var vmas []*vma.VmaEntry
	var pages []uint64 // present pages, ascending
	at := uint64(fillLayoutBase)
	big := rnd.IntN(3) == 0
	for range 1 + rnd.IntN(150) {
		if rnd.IntN(2) == 0 {
			at += uint64(1+rnd.IntN(16)) * page
		}
		n := uint64(1 + rnd.IntN(64))
		if big && rnd.IntN(8) == 0 {
			n = uint64(1 + rnd.IntN(8192))
		}
		var v *vma.VmaEntry
		private := true
		switch k := rnd.IntN(10); {
		case k < 5:
			v = anonVMA(at, n, rw)
		case k == 5:
			v = anonVMA(at, n, unix.PROT_READ)
		case k == 6:
			v = anonVMA(at, n, unix.PROT_NONE)
		case k < 9:
			v = fileVMA(at, n, []int{rw, unix.PROT_READ}[rnd.IntN(2)], uint32(1+rnd.IntN(5)), uint64(rnd.IntN(100))*page, false)
		default:
			v = fileVMA(at, n, rw, uint32(1+rnd.IntN(5)), 0, true)
			private = false
		}
		vmas = append(vmas, v)
		// Runs of present pages and holes, of random lengths.
		for p := uint64(0); private && p < n; {
			run := min(n-p, uint64(1+rnd.IntN(int(min(n, 512)))))
			if rnd.IntN(3) != 0 {
				for i := range run {
					pages = append(pages, at+(p+i)*page)
				}
			}
			p += run
		}
		at += n * page
	}
	vmas = append(vmas, dumpedVdso(dumpVdso)...)
	var pm []*pagemap.PagemapEntry
	offs := map[uint64]uint64{}
	for i, a := range pages {
		offs[a] = uint64(i) * page
		last := len(pm) - 1
		// Adjacent pages join the entry before, unless cut at random.
		if last >= 0 && pm[last].GetVaddr()+NrPages(pm[last])*page == a && rnd.IntN(50) != 0 {
			n := NrPages(pm[last]) + 1
			pm[last] = present(pm[last].GetVaddr(), n)
			continue
		}
		pm = append(pm, present(a, 1))
	}
	return vmas, pm, offs
}

// TestPlanFillRandom plans restores of random layouts with one to four
// filling threads, with and without faulting memory in ahead of the fill,
// and checks in the model that the layout comes out as dumped, that every
// present page is read once from its offset in the pages image and no
// other page is written, and (planMemWith) that with populate each page
// the fill writes is faulted in once, before its preadv, by the thread
// that runs the preadv.
func TestPlanFillRandom(t *testing.T) {
	for seed := uint64(0); seed < 300; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 0xf111))
		vmas, pm, offs := randomFillLayout(rnd)
		in := memInput(vmas, pm)
		in.Workers, in.Populate = 1+rnd.IntN(4), rnd.IntN(4) != 0
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			s, p := planMem(t, in)
			checkMergedLayout(t, s, in)
			got := map[uint64]uint64{}
			for _, f := range s.srcFills {
				if f.path != pagesImg {
					t.Fatalf("fill from %s", f.path)
				}
				for a := f.addr; a < f.addr+f.len; a += page {
					if _, dup := got[a]; dup {
						t.Fatalf("page %#x filled twice", a)
					}
					got[a] = f.off + a - f.addr
				}
			}
			if len(got) != len(offs) {
				t.Fatalf("%d pages filled, want %d", len(got), len(offs))
			}
			for a, off := range offs {
				if g, ok := got[a]; !ok || g != off {
					t.Fatalf("page %#x read from offset %#x (%v), want %#x", a, g, ok, off)
				}
			}
			checkFillSections(t, p, in.Workers, uint64(len(offs))*page)
		})
		if t.Failed() {
			return
		}
	}
}

// checkFillSections verifies that the fill is shared out between as
// many sections as threads, one if there is less than parallelFillMin
// to fill.
func checkFillSections(t *testing.T, p *plan.Program, workers int, total uint64) {
	t.Helper()
	if total < parallelFillMin {
		workers = 1
	}
	for w := range workers + 1 {
		if _, ok := p.Section(FillSection(w)); ok != (w < workers) {
			t.Fatalf("section %q there: %v, with %d threads filling %d bytes", FillSection(w), ok, workers, total)
		}
	}
}

// checkMergedLayout is checkLayout for layouts whose adjacent anonymous
// VMAs of one protection may come out merged, as the kernel merges them:
// both sides are compared with such neighbours joined.
func checkMergedLayout(t *testing.T, s *memSim, in *RestoreInput) {
	t.Helper()
	var got []seg
	for _, g := range s.segs {
		if g.start < testScratch || g.end > testScratch+scratchLen {
			got = append(got, g)
		}
	}
	want := newMemSim("")
	for _, v := range in.MM.GetVmas() {
		g := seg{start: v.GetStart(), end: v.GetEnd(), prot: uint64(v.GetProt()), flags: uint64(v.GetFlags()), what: "anon"}
		switch {
		case isVdso(v):
			g.what = kernelName(v, in.MM.GetVmas())
		case isFileVMA(v):
			g.what, g.off = fmt.Sprintf("/file%d", v.GetShmid()), v.GetPgoff()
		}
		want.insert(g)
	}
	if a, b := mergeAnon(got), mergeAnon(want.segs); !slices.Equal(a, b) {
		t.Fatalf("layout after the plan:\n%v\nwant:\n%v", a, b)
	}
}

// mergeAnon joins adjacent anonymous private mappings of one protection.
func mergeAnon(segs []seg) []seg {
	var out []seg
	for _, g := range segs {
		g.inherited = false
		if g.what == "anon" {
			g.off = 0
		}
		if n := len(out); n > 0 && g.what == "anon" && out[n-1].what == "anon" && out[n-1].end == g.start &&
			out[n-1].prot == g.prot && out[n-1].flags == g.flags {
			out[n-1].end = g.end
			continue
		}
		out = append(out, g)
	}
	return out
}
