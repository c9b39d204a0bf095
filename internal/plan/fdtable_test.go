package plan

import (
	"math/rand"
	"slices"
	"testing"
)

// TestFdTableMatchesModel runs random operations on fdTable and on a map
// that finds free numbers by counting up, and requires the same answers.
func TestFdTableMatchesModel(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	var tab fdTable
	model := map[int]bool{}
	lowestFrom := func(min int) int {
		for fd := min; ; fd++ {
			if !model[fd] {
				return fd
			}
		}
	}
	for i := range 20000 {
		fd := r.Intn(300)
		switch op := r.Intn(6); op {
		case 0, 1:
			want := lowestFrom(0)
			if got := tab.lowest(); got != want {
				t.Fatalf("op %d: lowest %d, want %d", i, got, want)
			}
			tab.set(want)
			model[want] = true
		case 2:
			tab.set(fd)
			model[fd] = true
		case 3:
			tab.clear(fd)
			delete(model, fd)
		case 4:
			if got, want := tab.lowestFrom(fd), lowestFrom(fd); got != want {
				t.Fatalf("op %d: lowestFrom(%d) %d, want %d", i, fd, got, want)
			}
		case 5:
			last := fd + r.Intn(100)
			tab.clearRange(fd, last)
			for k := range model {
				if k >= fd && k <= last {
					delete(model, k)
				}
			}
		}
		if got := tab.has(fd); got != model[fd] {
			t.Fatalf("op %d: has(%d) %v, want %v", i, fd, got, model[fd])
		}
	}
	var want []int
	for fd := range model {
		want = append(want, fd)
	}
	slices.Sort(want)
	if got := tab.list(); !slices.Equal(got, want) {
		t.Errorf("list %v, want %v", got, want)
	}
}

// TestFdTableClearRangeToEnd frees up to the largest descriptor number,
// as close_range(first, ~0U) does.
func TestFdTableClearRangeToEnd(t *testing.T) {
	var tab fdTable
	for _, fd := range []int{0, 1, 2, 70, 200} {
		tab.set(fd)
	}
	tab.clearRange(2, 1<<32-1)
	if got := tab.list(); !slices.Equal(got, []int{0, 1}) {
		t.Errorf("list %v, want [0 1]", got)
	}
	if got := tab.lowest(); got != 2 {
		t.Errorf("lowest %d, want 2", got)
	}
}
