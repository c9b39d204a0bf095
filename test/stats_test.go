package test

import (
	"os"
	"path/filepath"
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

// TestStatsSharedPages: the pages of shared memory objects are counted
// as shpages_written, so that pages_written and shpages_written together
// are every page in the pages images, as zdtm checks after each dump;
// the program is then restored and passes.
func TestStatsSharedPages(t *testing.T) {
	c := startCase(t, "shm_anon_fork")
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
	paths, err := filepath.Glob(filepath.Join(c.images, "pages-*.img"))
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		size += st.Size()
	}
	if d.GetShpagesWritten() == 0 || uint64(size) != (d.GetPagesWritten()+d.GetShpagesWritten())*uint64(os.Getpagesize()) {
		t.Errorf("stats-dump: pages_written %d + shpages_written %d pages, pages images hold %d bytes",
			d.GetPagesWritten(), d.GetShpagesWritten(), size)
	}
	c.mustRestoreDetached()
	c.mustPass()
}
