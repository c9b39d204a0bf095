package bench

import (
	"slices"
	"testing"
	"time"
)

// TestParseMigrate reads amber migrate's report.
func TestParseMigrate(t *testing.T) {
	out := "pre-dump 1: 65600 pages\npre-dump 2: 812 pages\nfrozen: 301 pages\n" +
		"downtime: 41.5 ms (measured on one clock)\ntotal: 1820.0 ms\nmigrated: pid 7 runs on 127.0.0.1:9\n"
	r, err := parseMigrate(out)
	if err != nil {
		t.Fatal(err)
	}
	want := migRound{downtime: 41500 * time.Microsecond, total: 1820 * time.Millisecond, preDumps: 2, frozenPages: 301, pid: 7}
	if r != want {
		t.Fatalf("got %+v, want %+v", r, want)
	}
	lazy := "frozen: 12 pages\ndowntime: 30.0 ms (measured on one clock)\nall pages in: 250.5 ms after the resume\n" +
		"total: 900.0 ms\nmigrated: pid 8 runs on 127.0.0.1:9\n"
	if r, err := parseMigrate(lazy); err != nil || r.allIn != 250500*time.Microsecond || r.pid != 8 {
		t.Fatalf("lazy report: got %+v, %v; want all in after 250.5 ms, pid 8", r, err)
	}
	if _, err := parseMigrate("migrated\n"); err == nil {
		t.Fatal("a report without downtime was accepted")
	}
}

// TestSplitMigrations separates migration workloads from the others.
func TestSplitMigrations(t *testing.T) {
	rest, ms := splitMigrations([]string{"mem512", "migrate64", "vma10k"})
	if !slices.Equal(rest, []string{"mem512", "vma10k"}) || len(ms) != 1 || ms[0].rate != 64 || len(ms[0].modes) != 3 {
		t.Fatalf("got %v and %v", rest, ms)
	}
	rest, ms = splitMigrations([]string{"migrate64/lazy", "migrate8/pre-copy", "migrate64/pre-copy", "migrate8/slow"})
	if !slices.Equal(rest, []string{"migrate8/slow"}) || len(ms) != 2 ||
		!slices.Equal(ms[0].modes, []string{"lazy", "pre-copy"}) || !slices.Equal(ms[1].modes, []string{"pre-copy"}) {
		t.Fatalf("modes picked: got %v and %+v", rest, ms)
	}
}
