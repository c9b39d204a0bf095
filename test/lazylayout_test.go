package test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// fixedLayoutSeeds are seeds of lazy_layout that found bugs, run every
// time: 0x998979505bde470f has a run of missing pages over two
// mappings, which one UFFDIO_COPY refused (ENOENT) and the daemon took
// for fatal, leaving the process zeroes.
var fixedLayoutSeeds = []uint64{0x998979505bde470f}

// layoutSeeds are the seeds of lazy_layout's random layouts: the one
// AMBER_LAYOUT_SEED names, to replay a failure, or the fixed ones and n
// random ones.
func layoutSeeds(t *testing.T, n int) []uint64 {
	if s := os.Getenv("AMBER_LAYOUT_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("AMBER_LAYOUT_SEED=%q: %v", s, err)
		}
		return []uint64{seed}
	}
	seeds := slices.Clone(fixedLayoutSeeds)
	for range n {
		seeds = append(seeds, rand.Uint64()|1)
	}
	return seeds
}

// TestLazyLayouts restores lazy_layout's random layouts lazily, from
// the images here and from a source serving its pages (dump
// --lazy-pages): regions of every size, adjacent and apart, read-only
// and PROT_NONE ones, untouched, zeroed and dropped runs, and, as soon
// as the program runs again, a region moved, one unmapped, a run
// dropped and a fork, while the daemon still copies in the background.
// The program and its child check every page. A failure names its
// seed: AMBER_LAYOUT_SEED=SEED replays it.
func TestLazyLayouts(t *testing.T) {
	for _, seed := range layoutSeeds(t, 3) {
		t.Run(fmt.Sprintf("local/%#x", seed), func(t *testing.T) {
			t.Setenv("LAYOUT_SEED", fmt.Sprint(seed))
			checkLayoutLog(t, startCase(t, "lazy_layout").mustRestoreLazily())
		})
		t.Run(fmt.Sprintf("remote/%#x", seed), func(t *testing.T) {
			t.Setenv("LAYOUT_SEED", fmt.Sprint(seed))
			checkLayoutLog(t, startRemoteLazy(t, "lazy_layout").mustRestoreAll())
		})
	}
}

// checkLayoutLog fails t if the lazy-pages daemon logged an error (a
// copy it gave up leaves pages to the kernel, which may pass a check
// that reads them before the daemon would have), and says what the
// daemon met while pages were missing.
func checkLayoutLog(t *testing.T, log string) {
	t.Helper()
	if line := lastLine(log, "Error"); line != "" {
		t.Errorf("lazy-pages logged an error: %s", line)
	}
	t.Logf("%d moves, %d drops, %d forks while pages were missing; %s", strings.Count(log, "moved from"),
		strings.Count(log, "dropped (event"), strings.Count(log, ": fork"), lastLine(log, "all in after"))
}
