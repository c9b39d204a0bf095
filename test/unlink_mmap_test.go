package test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestUnlinkMmapFailedRestore makes the restore of unlink_mmap_shared
// fail in its child, once the parent is restored and maps the ghosts
// amber made of its deleted files: the file the child maps is modified
// after the dump. The failed restore must name that file and leave
// nothing behind: no process, no ghost in /dev/shm or the test
// directory; a restore with --skip-file-check then succeeds.
func TestUnlinkMmapFailedRestore(t *testing.T) {
	c := startCase(t, "unlink_mmap_shared")
	c.mustDump()
	pids := c.dumpedPids()
	if len(pids) != 1 {
		t.Fatalf("dumped children %v, want one", pids)
	}
	child := pids[0]
	keep := filepath.Join(c.dir, "unlink_mmap_shared.keep")
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(keep, later, later); err != nil {
		t.Fatal(err)
	}
	before := append(ghostsIn(t, "/dev/shm"), ghostsIn(t, c.dir)...)
	r := c.restoreDetached(c.pidfile())
	t.Logf("refused: %s", r.stderr)
	requireFailure(t, r, "unlink_mmap_shared.keep")
	requireFailure(t, r, "modified")
	requireFailureNamingPid(t, r, child)
	c.requireLive()
	requireNoGhosts(t, "/dev/shm", fmt.Sprintf("amber-umap-%d", c.pid), fmt.Sprintf("sem.amber-umap-%d", c.pid))
	requireNoGhosts(t, c.dir, "unlink_mmap_shared.priv")
	for _, g := range append(ghostsIn(t, "/dev/shm"), ghostsIn(t, c.dir)...) {
		if !slices.Contains(before, g) {
			t.Errorf("a failed restore left %s behind", g)
		}
	}
	pidfile := c.pidfile()
	if r := c.amber(c.prog, c.restoreArgs(pidfile, "-d", "--skip-file-check")...); r.err != nil {
		t.Fatalf("restore --skip-file-check after a failed restore: %v", r)
	}
	c.checkRestoredPid(pidfile)
	c.mustPass()
}

// ghostsIn lists the ghosts (NAME.amber.ID.ghost) in dir: a glibc
// semaphore's has its temporary name, which the test does not know.
func ghostsIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".ghost") && strings.Contains(e.Name(), ".amber.") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// requireNoGhosts fails if dir holds an entry whose name starts with one
// of prefixes.
func requireNoGhosts(t *testing.T, dir string, prefixes ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		for _, p := range prefixes {
			if strings.HasPrefix(e.Name(), p) {
				t.Errorf("a failed restore left %s behind", filepath.Join(dir, e.Name()))
			}
		}
	}
}
