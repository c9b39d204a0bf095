package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"amber/internal/image"
	"amber/internal/mem"
)

// lazyRun is where the largest run of a task's pages lies in its pages
// image: the lazy program's buffer, which a lazy restore leaves to the
// daemon.
type lazyRun struct {
	pages     string // the pages image
	off, size int64
}

// imageRun is a run of present pages of a task: at vaddr, off bytes
// into its pages image.
type imageRun struct {
	vaddr     uint64
	off, size int64
}

// presentRuns are the runs of present pages of the case's root, in the
// order of its pages image, and that image's path.
func (c *zcase) presentRuns() (string, []imageRun) {
	c.t.Helper()
	dir, err := image.OpenDir(c.images)
	if err != nil {
		c.t.Fatal(err)
	}
	defer dir.Close()
	head, entries, err := mem.ReadPagemap(dir.PagemapPath(c.pid))
	if err != nil {
		c.t.Fatal(err)
	}
	var runs []imageRun
	var off int64
	for _, e := range entries {
		if e.GetFlags()&mem.PEPresent == 0 {
			continue
		}
		n := int64(mem.NrPages(e)) * 4096
		runs = append(runs, imageRun{e.GetVaddr(), off, n})
		off += n
	}
	return filepath.Join(c.images, dir.PagesPath(head.GetPagesId()).Name()), runs
}

// largestRun finds the largest run of pages of the case's root in its
// pages image.
func (c *zcase) largestRun() lazyRun {
	c.t.Helper()
	pages, runs := c.presentRuns()
	run := lazyRun{pages: pages}
	for _, r := range runs {
		if r.size > run.size {
			run.off, run.size = r.off, r.size
		}
	}
	return run
}

// imageOffset is where the page at addr of the case's root lies in its
// pages image.
func (c *zcase) imageOffset(addr uint64) int64 {
	c.t.Helper()
	_, runs := c.presentRuns()
	for _, r := range runs {
		if addr >= r.vaddr && addr < r.vaddr+uint64(r.size) {
			return r.off + int64(addr-r.vaddr)
		}
	}
	c.t.Fatalf("no page at %#x in the pages image", addr)
	return 0
}

// droppedRegion is the image offset of the 2 MiB lazy_mem drops as it
// runs again, by the address it printed.
func (c *zcase) droppedRegion() int64 {
	c.t.Helper()
	var addr uint64
	for _, l := range strings.Split(c.output(), "\n") {
		if _, err := fmt.Sscanf(l, "dropped at %v", &addr); err == nil {
			return c.imageOffset(addr)
		}
	}
	c.t.Fatalf("lazy_mem printed no \"dropped at\":\n%s", c.output())
	return 0
}

// TestLazyDamagedPages restores lazily a dump whose pages image has one
// byte changed in the memory left to the daemon: at the start, middle
// and end of the program's buffer, and either side of a boundary between
// two pieces of the manifest's piece sums, and in the memory the program
// drops before the daemon can bring it in. The restore does not read
// those bytes (but for a piece it reads in part, which it checks: then
// it fails naming the image); the daemon, which checks each piece before
// it places a page from it, must fail naming the image, kill the
// restored process (which must not pass, nor run on with wrong memory)
// and leave its PID free; or, for a piece of which the program dropped
// every page before it was needed, fail naming the image once every
// page is in, and leave the program running, which must pass.
func TestLazyDamagedPages(t *testing.T) {
	t.Setenv("LAZY_MIB", "64")
	for _, where := range []string{"start", "middle", "end", "before a piece boundary", "at a piece boundary", "in memory dropped"} {
		t.Run(strings.ReplaceAll(where, " ", "_"), func(t *testing.T) {
			c := startCase(t, "lazy_mem")
			c.mustDump()
			run := c.largestRun()
			boundary := (run.off/image.PieceSize + 2) * image.PieceSize
			off := map[string]int64{
				"start": run.off, "middle": run.off + run.size/2, "end": run.off + run.size - 1,
				"before a piece boundary": boundary - 1, "at a piece boundary": boundary,
			}[where]
			if where == "in memory dropped" {
				// A whole piece lies in the 2 MiB the program drops.
				dropped := c.droppedRegion()
				off = (dropped+image.PieceSize-1)/image.PieceSize*image.PieceSize + image.PieceSize/2
			}
			if boundary >= run.off+run.size {
				t.Fatalf("the program's buffer (%d bytes at %d) holds no piece boundary", run.size, run.off)
			}
			flipByteAt(t, run.pages, off)
			d := c.startLazyDaemon()
			if err := os.WriteFile(filepath.Join(c.dir, "go.now"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			r := c.amber(c.prog, c.restoreArgs(c.pidfile(), "-d", "--lazy-pages")...)
			log, err := d.wait()
			damaged := func(s string) bool {
				return strings.Contains(s, run.pages) && strings.Contains(s, "damaged since the dump")
			}
			switch {
			case r.err != nil && damaged(r.stderr):
				// A piece the restore reads in part: it checked it.
				t.Logf("the restore found the damage: %s", r.stderr)
			case r.err != nil && err == nil:
				t.Fatalf("the restore failed, not naming %s as damaged, and the daemon succeeded: %v", run.pages, r)
			case err == nil:
				t.Fatalf("the daemon succeeded with a damaged pages image:\n%s", log)
			case !damaged(log):
				t.Fatalf("the daemon's log does not name %s as damaged:\n%s", run.pages, log)
			case strings.Contains(log, "no page of it was placed"):
				// The program dropped the damaged page before it was
				// needed: the daemon found it at its end, and the
				// program, which got none of it, runs on.
				t.Logf("the damage was in memory the program dropped: %s", lastLine(log, "no page of it was placed"))
				c.mustPass()
				return
			}
			if err := reapOrphan(c.pid, exitTimeout); err != nil {
				t.Fatal(err)
			}
			if c.hasLine("PASS") {
				t.Fatalf("the restored program passed on a damaged image:\n%s", c.output())
			}
			c.requireLive()
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", c.pid)); err == nil {
				t.Fatalf("pid %d still held after the daemon failed", c.pid)
			}
		})
	}
}
