package bench

import (
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []int64
		want int64
	}{
		{[]int64{5}, 5},
		{[]int64{3, 1, 2}, 2},
		{[]int64{4, 1, 3, 2}, 2}, // (2+3)/2 in integers
		{[]int64{10, 30}, 20},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
	in := []int64{3, 1, 2}
	median(in)
	if in[0] != 3 || in[1] != 1 || in[2] != 2 {
		t.Errorf("median reordered its argument: %v", in)
	}
}

func TestMedianFloat(t *testing.T) {
	if got := median([]float64{1, 2}); got != 1.5 {
		t.Errorf("median(1, 2) = %v, want 1.5", got)
	}
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func testRound(dump, restore, floor int, rss int64) round {
	return round{
		dump:       timed{wall: ms(dump), maxRSS: rss},
		restore:    timed{wall: ms(restore), maxRSS: rss / 2},
		floor:      floorResult{inProcess: ms(floor), process: ms(floor + 5)},
		imageBytes: 512 << 20,
	}
}

func TestSummarize(t *testing.T) {
	s := summarize([]round{
		testRound(300, 200, 100, 40<<20),
		testRound(100, 400, 200, 20<<20),
		testRound(200, 300, 300, 30<<20),
	})
	if s.rounds != 3 {
		t.Errorf("rounds = %d, want 3", s.rounds)
	}
	best := figures{
		dump: ms(100), restore: ms(200), floor: ms(100), floorProc: ms(105), ratio: 2,
		image: 512 << 20, dumpRSS: 20 << 20, restoreRSS: 10 << 20,
	}
	if s.best != best {
		t.Errorf("best = %+v, want %+v", s.best, best)
	}
	med := figures{
		dump: ms(200), restore: ms(300), floor: ms(200), floorProc: ms(205), ratio: 1.5,
		image: 512 << 20, dumpRSS: 30 << 20, restoreRSS: 15 << 20,
	}
	if s.median != med {
		t.Errorf("median = %+v, want %+v", s.median, med)
	}
}

func TestRatioOfZeroFloor(t *testing.T) {
	if got := ratio(ms(5), 0); got != 0 {
		t.Errorf("ratio(5ms, 0) = %v, want 0", got)
	}
}
