package test

import (
	"os"
	"path/filepath"
	"strings"
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
	d := readDumpStats(t, c.images)
	if d.GetPagesWritten() == 0 || d.GetPagesScanned() < d.GetPagesWritten() || d.GetFrozenTime() == 0 {
		t.Errorf("stats-dump: %+v: want pages written, no more than scanned, and a frozen time", d)
	}
	c.mustRestoreDetached()
	c.mustPass()
}

// TestStatsDumpShmem: stats-dump counts the pages of shared memory it
// wrote (shpages_written) beside the private ones, so that the two add up
// to the pages images, as CRIU's zdtm checks after every dump.
func TestStatsDumpShmem(t *testing.T) {
	c := startCase(t, "shm_anon_single")
	c.mustDump()
	d := readDumpStats(t, c.images)
	if d.ShpagesWritten == nil || d.GetShpagesWritten() == 0 {
		t.Errorf("stats-dump: %+v: want shpages_written, the shared pages", d)
	}
	if got, want := d.GetPagesWritten()+d.GetShpagesWritten(), pagesInImages(t, c.images); got != want {
		t.Errorf("stats-dump: %d + %d pages written, the pages images hold %d", d.GetPagesWritten(), d.GetShpagesWritten(), want)
	}
	c.mustRestoreDetached()
	c.mustPass()
}

// pagesInImages counts the pages of the pages-N.img files of dir.
func pagesInImages(t *testing.T, dir string) uint64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var bytes int64
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "pages-") {
			continue
		}
		st, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		bytes += st.Size()
	}
	return uint64(bytes / int64(os.Getpagesize()))
}

// readDumpStats reads the dump's entry of the stats-dump in images.
func readDumpStats(t *testing.T, images string) *stats.DumpStatsEntry {
	t.Helper()
	dir, err := image.OpenDir(images)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	all, err := image.ReadFile(dir.StatsDumpPath(), image.Stats, func() *stats.StatsEntry { return &stats.StatsEntry{} })
	if err != nil || len(all) != 1 {
		t.Fatalf("stats-dump: %d entries, %v", len(all), err)
	}
	return all[0].GetDump()
}
