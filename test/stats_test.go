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
// zdtm checks every dump's stats as CRIU's: shpages_written must be
// there, and with pages_written it must count every page of the pages
// images, those of shared memory (anonymous, SysV) too.
func TestStatsDump(t *testing.T) {
	for _, prog := range []string{"counter", "shm_anon_fork", "sysv_shm00"} {
		t.Run(prog, func(t *testing.T) {
			c := startCase(t, prog)
			c.mustDump()
			d := readStatsDump(t, c.images)
			if d.GetPagesWritten() == 0 || d.GetPagesScanned() < d.GetPagesWritten() || d.GetFrozenTime() == 0 {
				t.Errorf("stats-dump: %+v: want pages written, no more than scanned, and a frozen time", d)
			}
			if d.ShpagesWritten == nil {
				t.Errorf("stats-dump: %+v: no shpages_written", d)
			}
			if got, want := d.GetPagesWritten()+d.GetShpagesWritten(), pagesInImages(t, c.images); got != want {
				t.Errorf("stats-dump: pages_written %d + shpages_written %d = %d, the pages images hold %d",
					d.GetPagesWritten(), d.GetShpagesWritten(), got, want)
			}
			c.mustRestoreDetached()
			c.mustPass()
		})
	}
}

func readStatsDump(t *testing.T, images string) *stats.DumpStatsEntry {
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

// pagesInImages counts the pages of every pages-N.img in images.
func pagesInImages(t *testing.T, images string) uint64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(images, "pages-*.img"))
	if err != nil {
		t.Fatal(err)
	}
	var bytes int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		bytes += st.Size()
	}
	return uint64(bytes) / uint64(os.Getpagesize())
}
