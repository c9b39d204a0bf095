package mem

import (
	"fmt"
	"slices"
	"testing"
)

// recordingSink records the requests a dump sends to a page server.
type recordingSink struct{ calls []string }

func (s *recordingSink) OpenTask(int) (bool, error) { return true, nil }

func (s *recordingSink) Add(vaddr uint64, pages []byte) error {
	s.calls = append(s.calls, fmt.Sprintf("add %#x+%d", vaddr, len(pages)/pageSize))
	return nil
}

func (s *recordingSink) Hole(vaddr, n uint64) error {
	s.calls = append(s.calls, fmt.Sprintf("hole %#x+%d", vaddr, n))
	return nil
}

func (s *recordingSink) Lazy(vaddr, n uint64) error {
	s.calls = append(s.calls, fmt.Sprintf("lazy %#x+%d", vaddr, n))
	return nil
}

// TestSendChunkAddressOrder: a chunk whose runs have parent and lazy runs
// between them sends each gap before the run after it, so that the page server's
// pagemap lists pages in address order (a server that wrote a hole after
// the run beyond it made a pagemap no later dump could stand on).
func TestSendChunkAddressOrder(t *testing.T) {
	p := uint64(pageSize)
	c := sentChunk{runs: []Run{{1 * p, 2 * p}, {5 * p, 6 * p}}, buf: make([]byte, 2*p)}
	gaps := gapsOf([]Run{{2 * p, 4 * p}, {7 * p, 8 * p}}, []Run{{4 * p, 5 * p}})
	var s recordingSink
	left, err := sendChunk(&s, c, gaps)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"add 0x1000+1", "hole 0x2000+2", "lazy 0x4000+1", "add 0x5000+1"}
	if !slices.Equal(s.calls, want) {
		t.Fatalf("sent %v, want %v", s.calls, want)
	}
	if !slices.Equal(left, []gap{{Run: Run{7 * p, 8 * p}}}) {
		t.Fatalf("gaps left %v, want the one after the chunk", left)
	}
}
