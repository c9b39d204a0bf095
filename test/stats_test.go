package test

import (
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/stats"

	"amber/internal/image"
)

// TestStatsDump: a dump leaves CRIU's stats-dump in its work directory
// (here the images directory), which Podman reads and exports: the
// pages it wrote, and times; the program is then restored and passes.
func TestStatsDump(t *testing.T) {
	c := startCase(t, "counter")
	c.mustDump()
	dir, err := image.OpenDir(c.images)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	all, err := image.ReadFile(dir.StatsDumpPath(), image.Stats, func() *stats.StatsEntry { return &stats.StatsEntry{} })
	if err != nil || len(all) != 1 {
		t.Fatalf("stats-dump: %d entries, %v", len(all), err)
	}
	d := all[0].GetDump()
	if d.GetPagesWritten() == 0 || d.GetPagesScanned() < d.GetPagesWritten() || d.GetFrozenTime() == 0 {
		t.Errorf("stats-dump: %+v: want pages written, no more than scanned, and a frozen time", d)
	}
	c.mustRestoreDetached()
	c.mustPass()
}
