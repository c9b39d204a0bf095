package restore

import (
	"errors"
	"maps"
	"testing"
)

// TestGiveAll: every descriptor of a map is given, in a new map (amber
// still closes its own by the old one), and a failure names its key.
func TestGiveAll(t *testing.T) {
	old := map[string]int{"a": 7, "b": 9}
	given := map[int]int{}
	got, err := giveAll(old, func(fd int) (int, error) { given[fd] = fd + 100; return fd + 100, nil })
	if err != nil || !maps.Equal(got, map[string]int{"a": 107, "b": 109}) {
		t.Fatalf("giveAll: %v (%v)", got, err)
	}
	if !maps.Equal(old, map[string]int{"a": 7, "b": 9}) {
		t.Errorf("the old map changed: %v", old)
	}
	if _, err := giveAll(old, func(fd int) (int, error) { return 0, errors.New("no") }); err == nil || err.Error() != "a: no" {
		t.Errorf("failed give: %v, want the first key named", err)
	}
	if m, err := giveAll[uint32](nil, nil); m != nil || err != nil {
		t.Errorf("nil map: %v %v", m, err)
	}
}

// TestGivenFd: without a stub's copies a descriptor is amber's own; with
// them, the stub's number, or -1 for one the stub was not given (a take
// of it fails, rather than taking whatever the stub has there).
func TestGivenFd(t *testing.T) {
	h := &host{}
	if h.givenFd(5) != 5 {
		t.Errorf("no copies: %d", h.givenFd(5))
	}
	h.given = map[int]int{5: 12, 0: 13}
	if h.givenFd(5) != 12 || h.givenFd(0) != 13 || h.givenFd(6) != -1 {
		t.Errorf("copies: %d %d %d, want 12 13 -1", h.givenFd(5), h.givenFd(0), h.givenFd(6))
	}
}
