package mem

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/image"
	"amber/internal/plan"
)

// The property tests of incremental dumps, over random layouts: the run
// arithmetic that decides what a dump leaves to its parent images, and
// the restore's walk down a chain of them, each checked page by page
// against a plain model.

// chainBase is where the pages of the random layouts start.
const chainBase = 0x1000_0000

// randomRuns draws sorted, disjoint runs over n pages from chainBase,
// touching ones sometimes left apart (as per-VMA runs are).
func randomRuns(rnd *rand.Rand, n int, density float64) []Run {
	var out []Run
	for i := 0; i < n; i++ {
		if rnd.Float64() >= density {
			continue
		}
		a := uint64(chainBase + i*pageSize)
		if k := len(out); k > 0 && out[k-1].End == a && rnd.IntN(4) > 0 {
			out[k-1].End += pageSize
			continue
		}
		out = append(out, Run{a, a + pageSize})
	}
	return out
}

// pageSet is a set of page indexes from chainBase: the model.
type pageSet map[int]bool

func setOf(runs []Run) pageSet {
	s := pageSet{}
	for _, r := range runs {
		for a := r.Start; a < r.End; a += pageSize {
			s[int((a-chainBase)/pageSize)] = true
		}
	}
	return s
}

// checkRuns checks that runs are sorted, disjoint and non-empty, and hold
// exactly want.
func checkRuns(t *testing.T, what string, runs []Run, want pageSet) {
	t.Helper()
	for i, r := range runs {
		if r.End <= r.Start || (i > 0 && r.Start < runs[i-1].End) {
			t.Fatalf("%s: run %d %#x-%#x empty or out of order", what, i, r.Start, r.End)
		}
	}
	if got := setOf(runs); !mapsEqual(got, want) {
		t.Fatalf("%s: %d pages, want %d", what, len(got), len(want))
	}
}

func mapsEqual(a, b pageSet) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// TestSplitParentRandom: a page is left to the parent exactly when it
// has data, the parent holds it, and it is tracked and not written; every
// other page with data is copied, except markers, which hold none.
func TestSplitParentRandom(t *testing.T) {
	for seed := uint64(0); seed < 500; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 0x9a7e47))
		n := 1 + rnd.IntN(300)
		data := randomRuns(rnd, n, rnd.Float64())
		inc := &Incremental{
			InParent: randomRuns(rnd, n, rnd.Float64()),
			Tracked:  randomRuns(rnd, n, rnd.Float64()),
			Written:  randomRuns(rnd, n, rnd.Float64()),
			Markers:  randomRuns(rnd, n, rnd.Float64()/4),
		}
		d, in, tr, wr, mk := setOf(data), setOf(inc.InParent), setOf(inc.Tracked), setOf(inc.Written), setOf(inc.Markers)
		wantParent, wantCopied := pageSet{}, pageSet{}
		for p := range d {
			switch {
			case mk[p]:
			case in[p] && tr[p] && !wr[p]:
				wantParent[p] = true
			default:
				wantCopied[p] = true
			}
		}
		copied, parent := inc.splitParent(data)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			checkRuns(t, "copied", copied, wantCopied)
			checkRuns(t, "parent", parent, wantParent)
			checkRuns(t, "intersect", intersectRuns(data, inc.Written), andSet(d, wr))
		})
		if t.Failed() {
			return
		}
	}
	var none *Incremental
	if c, p := none.splitParent([]Run{{chainBase, chainBase + pageSize}}); len(c) != 1 || p != nil {
		t.Errorf("no incremental dump: copied %v, parent %v", c, p)
	}
}

func andSet(a, b pageSet) pageSet {
	out := pageSet{}
	for k := range a {
		if b[k] {
			out[k] = true
		}
	}
	return out
}

// pageSource is where the model says a page's contents are: the layer
// (0 the task's own images) and the offset in that layer's pages image.
type pageSource struct {
	layer int
	off   uint64
}

// randomChain draws a chain of depth+1 pagemaps over n pages: in each, a
// page is absent, present, or left to the parent (only where the parent
// has it, unless broken). It returns the pagemaps, top first, and where
// each page of the top one really is.
func randomChain(rnd *rand.Rand, n, depth int, broken bool) ([][]*pagemap.PagemapEntry, map[int]pageSource) {
	// Bottom up: which pages each layer holds, and where they are.
	holds := map[int]pageSource{}
	var layers [][]*pagemap.PagemapEntry
	for l := depth; l >= 0; l-- {
		kinds := make([]uint32, n) // 0 absent, else the flag
		next := map[int]pageSource{}
		for p := 0; p < n; p++ {
			switch rnd.IntN(3) {
			case 1:
				kinds[p] = PEPresent
			case 2:
				if _, ok := holds[p]; ok || broken && l < depth && rnd.IntN(20) == 0 {
					kinds[p] = PEParent
				}
			}
		}
		var pm []*pagemap.PagemapEntry
		var off uint64
		for p := 0; p < n; {
			k := kinds[p]
			q := p + 1
			for q < n && kinds[q] == k && rnd.IntN(5) > 0 {
				q++
			}
			if k != 0 {
				pm = append(pm, pagemapEntry(Run{uint64(chainBase + p*pageSize), uint64(chainBase + q*pageSize)}, k))
			}
			for i := p; i < q; i++ {
				switch k {
				case PEPresent:
					next[i] = pageSource{l, off}
					off += pageSize
				case PEParent:
					if src, ok := holds[i]; ok {
						next[i] = src
					}
				}
			}
			p = q
		}
		holds = next
		layers = append([][]*pagemap.PagemapEntry{pm}, layers...)
	}
	return layers, holds
}

// chainImage names the pages image of layer l of a chain.
func chainImage(l int) string {
	if l == 0 {
		return pagesImg
	}
	return fmt.Sprintf("/img/parent%d/pages-1.img", l)
}

// TestRestoreChainRandom plans restores of random chains of parent
// images (up to eight levels, entries cut at random) and checks, page by
// page in the model, that each page is read from the layer and offset
// that hold it, that no other page is written, and that a chain lacking
// a page some level leaves to its parent is refused.
func TestRestoreChainRandom(t *testing.T) {
	for seed := uint64(0); seed < 300; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 0xc4a1))
		n, depth := 1+rnd.IntN(200), rnd.IntN(9)
		broken := rnd.IntN(4) == 0
		layers, want := randomChain(rnd, n, depth, broken)
		t.Run(fmt.Sprint(seed), func(t *testing.T) { checkChainRestore(t, n, layers, want) })
		if t.Failed() {
			return
		}
	}
}

func checkChainRestore(t *testing.T, n int, layers [][]*pagemap.PagemapEntry, want map[int]pageSource) {
	in := memInput(chainVMAs(n), layers[0])
	parentImgs := map[string]bool{}
	for l, pm := range layers[1:] {
		in.Parents = append(in.Parents, PagesLayer{Pagemap: pm, Pages: image.TaskFile{Path: chainImage(l + 1), Flags: unix.O_RDONLY}})
		parentImgs[chainImage(l+1)] = true
	}
	if missing := missingInChain(layers[0], want); missing >= 0 {
		err := planChainErr(in)
		if err == nil || !strings.Contains(err.Error(), "parent images") {
			t.Fatalf("page %d is in no layer; planning said %v, want an error about the parent images", missing, err)
		}
		return
	}
	s, _ := planMemWith(t, in, func(s *memSim) { s.parentImgs = parentImgs })
	got := map[int]pageSource{}
	for _, f := range s.srcFills {
		layer := slices.Index(chainImages(len(layers)), f.path)
		for a := f.addr; a < f.addr+f.len; a += pageSize {
			p := int((a - chainBase) / pageSize)
			if _, dup := got[p]; dup {
				t.Fatalf("page %d filled twice", p)
			}
			got[p] = pageSource{layer, f.off + a - f.addr}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d pages filled, want %d", len(got), len(want))
	}
	for p, w := range want {
		if got[p] != w {
			t.Fatalf("page %d read from layer %d offset %#x, want layer %d offset %#x", p, got[p].layer, got[p].off, w.layer, w.off)
		}
	}
}

// missingInChain returns a page the top pagemap lists that no layer
// holds (a broken chain), or -1.
func missingInChain(top []*pagemap.PagemapEntry, holds map[int]pageSource) int {
	for _, e := range top {
		for a := e.GetVaddr(); a < e.GetVaddr()+NrPages(e)*pageSize; a += pageSize {
			if p := int((a - chainBase) / pageSize); !holdsPage(holds, p) {
				return p
			}
		}
	}
	return -1
}

func holdsPage(holds map[int]pageSource, p int) bool {
	_, ok := holds[p]
	return ok
}

func chainImages(n int) []string {
	out := make([]string, n)
	for l := range out {
		out[l] = chainImage(l)
	}
	return out
}

// chainVMAs covers the n pages with a few adjacent anonymous VMAs.
func chainVMAs(n int) []*vma.VmaEntry {
	var out []*vma.VmaEntry
	for at := 0; at < n; {
		k := min(n-at, 1+at%37)
		out = append(out, anonVMA(uint64(chainBase+at*pageSize), uint64(k), rw))
		at += k
	}
	return out
}

func planChainErr(in *RestoreInput) error {
	return PlanRestore(plan.NewBuilder(testScratch, 0), in)
}

// TestFindFromAnyOrder checks findFrom against a walk of all the runs,
// for lookups in random order as well as in address order: one behind
// the last must search again, not go on from where that one ended.
func TestFindFromAnyOrder(t *testing.T) {
	rnd := rand.New(rand.NewPCG(21, 8))
	run := func(r Run) Run { return r }
	for round := range 500 {
		var rs []Run
		for at := uint64(rnd.IntN(3)) * pageSize; len(rs) < rnd.IntN(30); {
			n := uint64(1+rnd.IntN(4)) * pageSize
			rs = append(rs, Run{at, at + n})
			at += n + uint64(rnd.IntN(3))*pageSize
		}
		next := 0
		for q := range 40 {
			addr := uint64(rnd.IntN(130)) * pageSize
			if round%2 == 0 {
				addr = uint64(q) * 3 * pageSize // in address order
			}
			i, ok := findFrom(rs, next, addr, run)
			want := slices.IndexFunc(rs, func(r Run) bool { return r.End > addr })
			if want < 0 {
				want = len(rs)
			}
			wantOK := want < len(rs) && rs[want].Start <= addr
			if i != want || ok != wantOK {
				t.Fatalf("round %d: lookup of %#x after %d in %x: %d %v, want %d %v", round, addr, next, rs, i, ok, want, wantOK)
			}
			next = i
		}
	}
}
