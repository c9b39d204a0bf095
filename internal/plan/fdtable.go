package plan

import "math/bits"

// fdTable simulates the task's descriptor table: the kernel gives every
// new descriptor the lowest free number, so the plan knows each one. It
// is a bitmap that remembers below which word every descriptor is taken,
// so that a process with tens of thousands of descriptors is planned in
// linear time.
type fdTable struct {
	words []uint64 // bit fd%64 of words[fd/64] is set when fd is open
	full  int      // every word below this index is full
}

func (t *fdTable) has(fd int) bool {
	w := fd / 64
	return fd >= 0 && w < len(t.words) && t.words[w]&(1<<(fd%64)) != 0
}

func (t *fdTable) set(fd int) {
	w := fd / 64
	for w >= len(t.words) {
		t.words = append(t.words, 0)
	}
	t.words[w] |= 1 << (fd % 64)
}

func (t *fdTable) clear(fd int) {
	w := fd / 64
	if fd < 0 || w >= len(t.words) {
		return
	}
	t.words[w] &^= 1 << (fd % 64)
	t.full = min(t.full, w)
}

// clearRange frees every descriptor from first to last.
func (t *fdTable) clearRange(first, last int) {
	for w := max(first, 0) / 64; w < len(t.words) && w*64 <= last; w++ {
		for b := range 64 {
			if fd := w*64 + b; fd >= first && fd <= last {
				t.clear(fd)
			}
		}
	}
}

// lowest is the lowest free descriptor.
func (t *fdTable) lowest() int {
	for t.full < len(t.words) && t.words[t.full] == ^uint64(0) {
		t.full++
	}
	return t.lowestFrom(t.full * 64)
}

// lowestFrom is the lowest free descriptor at or above min.
func (t *fdTable) lowestFrom(min int) int {
	min = max(min, 0)
	for w := min / 64; w < len(t.words); w++ {
		word := t.words[w]
		if w == min/64 {
			word |= 1<<(min%64) - 1 // descriptors below min count as taken
		}
		if word != ^uint64(0) {
			return w*64 + bits.TrailingZeros64(^word)
		}
	}
	return max(min, len(t.words)*64)
}

// list returns the open descriptors in increasing order.
func (t *fdTable) list() []int {
	var out []int
	for w, word := range t.words {
		for ; word != 0; word &= word - 1 {
			out = append(out, w*64+bits.TrailingZeros64(word))
		}
	}
	return out
}
