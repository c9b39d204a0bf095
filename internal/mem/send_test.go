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

// TestSendChunkAddressOrder: a chunk whose runs have parent runs between
// them sends each hole before the run after it, so that the page server's
// pagemap lists pages in address order (a server that wrote a hole after
// the run beyond it made a pagemap no later dump could stand on).
func TestSendChunkAddressOrder(t *testing.T) {
	p := uint64(pageSize)
	c := sentChunk{runs: []Run{{1 * p, 2 * p}, {5 * p, 6 * p}}, buf: make([]byte, 2*p)}
	parent := []Run{{2 * p, 5 * p}, {7 * p, 8 * p}}
	var s recordingSink
	left, err := sendChunk(&s, c, parent)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"add 0x1000+1", "hole 0x2000+3", "add 0x5000+1"}
	if !slices.Equal(s.calls, want) {
		t.Fatalf("sent %v, want %v", s.calls, want)
	}
	if !slices.Equal(left, []Run{{7 * p, 8 * p}}) {
		t.Fatalf("parent runs left %v, want the one after the chunk", left)
	}
}
