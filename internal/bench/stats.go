package bench

import (
	"slices"
	"time"
)

// number is what the statistics work on: durations and byte counts.
type number interface{ ~int64 | ~float64 }

// median is the middle value of xs (not empty), or the mean of the two
// middle ones.
func median[T number](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// figures are one line of a report: each measurement's best or median.
type figures struct {
	dump, restore, floor, floorProc time.Duration
	ratio                           float64 // restore / floor (the in-process floor)
	image, dumpRSS, restoreRSS      int64
}

// summary is a workload's measurements over its rounds: the best
// (minimum) and the median of each. The best ratio is the best restore over
// the best floor; the median ratio, the median restore over the median
// floor.
type summary struct {
	rounds       int
	best, median figures
}

// columns are the measurements of all rounds, one slice per kind.
type columns struct {
	dump, restore, floor, floorProc []time.Duration
	image, dumpRSS, restoreRSS      []int64
}

// summarize turns rounds (at least one) into a summary.
func summarize(rs []round) summary {
	var c columns
	for _, r := range rs {
		c.dump = append(c.dump, r.dump.wall)
		c.restore = append(c.restore, r.restore.wall)
		c.floor = append(c.floor, r.floor.inProcess)
		c.floorProc = append(c.floorProc, r.floor.process)
		c.image = append(c.image, r.imageBytes)
		c.dumpRSS = append(c.dumpRSS, r.dump.maxRSS)
		c.restoreRSS = append(c.restoreRSS, r.restore.maxRSS)
	}
	return summary{rounds: len(rs), best: c.best(), median: c.median()}
}

func (c columns) best() figures {
	f := figures{
		dump: slices.Min(c.dump), restore: slices.Min(c.restore),
		floor: slices.Min(c.floor), floorProc: slices.Min(c.floorProc),
		image: slices.Min(c.image), dumpRSS: slices.Min(c.dumpRSS), restoreRSS: slices.Min(c.restoreRSS),
	}
	f.ratio = ratio(f.restore, f.floor)
	return f
}

func (c columns) median() figures {
	f := figures{
		dump: median(c.dump), restore: median(c.restore),
		floor: median(c.floor), floorProc: median(c.floorProc),
		image: median(c.image), dumpRSS: median(c.dumpRSS), restoreRSS: median(c.restoreRSS),
	}
	f.ratio = ratio(f.restore, f.floor)
	return f
}

// ratio is a/b, or 0 when b is not positive.
func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// bestAndMedian are the best (minimum) and the median of each figure
// figs gives of a round, over rs (not empty).
func bestAndMedian[R any](rs []R, figs func(R) []time.Duration) (best, med []time.Duration) {
	var cols [][]time.Duration
	for _, r := range rs {
		for i, f := range figs(r) {
			if i == len(cols) {
				cols = append(cols, nil)
			}
			cols[i] = append(cols[i], f)
		}
	}
	for _, c := range cols {
		best, med = append(best, slices.Min(c)), append(med, median(c))
	}
	return best, med
}
