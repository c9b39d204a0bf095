package dump

import (
	"slices"
	"testing"
)

// CRIU's restore refuses an mm image with more than 44 auxv words (this
// kernel's vector with its AT_NULL pair is 46): the image holds it
// without AT_NULL, and a longer one is cut as CRIU cuts it.
func TestSavedAuxv(t *testing.T) {
	pairs := func(n int) []uint64 {
		var w []uint64
		for i := 1; i <= n; i++ {
			w = append(w, uint64(i), uint64(100+i))
		}
		return w
	}
	withNull := func(n int) []uint64 { return append(pairs(n), 0, 0) }
	cases := []struct {
		name string
		in   []uint64
		want []uint64
		lost int
	}{
		{"this kernel's 22 pairs and AT_NULL", withNull(22), pairs(22), 0},
		{"short", withNull(3), pairs(3), 0},
		{"too long", withNull(25), pairs(22), 3},
		{"no AT_NULL", pairs(2), pairs(2), 0},
	}
	for _, c := range cases {
		got, lost := savedAuxv(c.in)
		if !slices.Equal(got, c.want) || lost != c.lost {
			t.Errorf("%s: got %v (%d lost), want %v (%d lost)", c.name, got, lost, c.want, c.lost)
		}
		if len(got) > auxvWords {
			t.Errorf("%s: %d words, more than CRIU reads", c.name, len(got))
		}
	}
}
