package mem

import (
	"math/rand/v2"
	"slices"
	"testing"

	"amber/internal/compel"
)

// sentReq is one request a dump sent to a page server, as checkSink
// recorded it.
type sentReq struct {
	Run
	kind byte   // 'a' (pages), 'p' (left to the parent), 'l' (lazy)
	data []byte // the pages of an 'a', copied: the sender reuses its buffers
}

// checkSink records what a dump sends to a page server.
type checkSink struct{ reqs []sentReq }

func (s *checkSink) OpenTask(int) (bool, error) { return true, nil }

func (s *checkSink) Add(vaddr uint64, pages []byte) error {
	s.reqs = append(s.reqs, sentReq{Run{vaddr, vaddr + uint64(len(pages))}, 'a', slices.Clone(pages)})
	return nil
}

func (s *checkSink) Hole(vaddr, n uint64) error {
	s.reqs = append(s.reqs, sentReq{Run: Run{vaddr, vaddr + n*pageSize}, kind: 'p'})
	return nil
}

func (s *checkSink) Lazy(vaddr, n uint64) error {
	s.reqs = append(s.reqs, sentReq{Run: Run{vaddr, vaddr + n*pageSize}, kind: 'l'})
	return nil
}

// TestSendLayouts sends the pages a dump saves of random layouts (private
// data, pages shared with another mapping, file pages, guards, gaps) to a
// page server, in chunks of one page, three pages, copyChunk,
// sendChunkBytes and 4 MiB, with random pieces of them left to the
// parent images or lazy: the requests must come in address order, name
// each piece with its kind, and carry the task's pages as /proc/PID/mem
// reads them page by page.
func TestSendLayouts(t *testing.T) {
	forPlannedLayouts(t, func(t *testing.T, spec layoutSpec, pid int, plan pagePlan) {
		rnd := rand.New(rand.NewPCG(spec.Seed, 7))
		copied, parent, lazy := splitRandomly(rnd, plan.merged)
		want, total := readRunsSlowly(t, pid, copied)
		if len(parent) == 0 || len(lazy) == 0 || len(intersectRuns(plan.shared, copied)) == 0 || total < 8*pageSize {
			t.Fatalf("layout of %d bytes, %d parent, %d lazy runs: too little to check", total, len(parent), len(lazy))
		}
		for _, chunk := range []uint64{pageSize, 3 * pageSize, copyChunk, sendChunkBytes, 4 << 20} {
			var sink checkSink
			sent, err := sendRuns(&compel.Task{Pid: pid}, &sink, copied, gapsOf(parent, lazy), intersectRuns(plan.shared, copied), "test", chunk)
			if err != nil {
				t.Fatalf("chunk %d: %v", chunk, err)
			}
			if sent != total {
				t.Errorf("chunk %d: sent %d bytes, want %d", chunk, sent, total)
			}
			checkSent(t, chunk, sink.reqs, copied, parent, lazy, want)
		}
	})
}

// splitRandomly cuts runs into random pieces and deals them out: most
// copied, some left to the parent images, some lazy.
func splitRandomly(rnd *rand.Rand, runs []Run) (copied, parent, lazy []Run) {
	for _, r := range runs {
		for r.Start < r.End {
			n := uint64(1 + rnd.IntN(1+rnd.IntN(600)))
			p := Run{r.Start, min(r.End, r.Start+n*pageSize)}
			r.Start = p.End
			switch k := rnd.IntN(10); {
			case k < 6:
				copied = append(copied, p)
			case k < 8:
				parent = append(parent, p)
			default:
				lazy = append(lazy, p)
			}
		}
	}
	return copied, parent, lazy
}

// checkSent checks the requests against the runs they were to send and
// the pages of the copied runs, in order.
func checkSent(t *testing.T, chunk uint64, reqs []sentReq, copied, parent, lazy []Run, want []byte) {
	t.Helper()
	byKind := map[byte][]Run{}
	var got []byte
	var end uint64
	for i, r := range reqs {
		if r.Start < end || r.End <= r.Start || r.Start%pageSize != 0 || r.End%pageSize != 0 {
			t.Fatalf("chunk %d: request %d (%c %#x-%#x) out of address order or empty, after one ending at %#x", chunk, i, r.kind, r.Start, r.End, end)
		}
		end = r.End
		byKind[r.kind] = appendRun(byKind[r.kind], r.Run)
		got = append(got, r.data...)
	}
	for _, k := range []struct {
		kind byte
		want []Run
	}{{'a', copied}, {'p', parent}, {'l', lazy}} {
		if !slices.Equal(byKind[k.kind], mergeRuns(k.want)) {
			t.Fatalf("chunk %d: %c requests cover %d runs, want %d", chunk, k.kind, len(byKind[k.kind]), len(mergeRuns(k.want)))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("chunk %d: sent %d bytes of pages, want %d", chunk, len(got), len(want))
	}
	for off := 0; off < len(want); off += pageSize {
		if string(got[off:off+pageSize]) != string(want[off:off+pageSize]) {
			t.Fatalf("chunk %d: page %d sent differs from the task's", chunk, off/pageSize)
		}
	}
}
