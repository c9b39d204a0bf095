package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestGhostNoFiemap dumps ghost_holes with --no-ghost-fiemap, as CRIU's
// ghost_multi_hole00 does (TestZdtm dumps it with --ghost-fiemap): the
// same holes and data after restore.
func TestGhostNoFiemap(t *testing.T) {
	c := startCase(t, "ghost_holes")
	tree := descendants(c.pid)
	if r := c.dump("--ghost-limit", "16M", "--no-ghost-fiemap"); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	c.reapDumped(append(tree, c.dumpedPids()...))
	c.mustRestoreDetached()
	c.mustPass()
}

// TestFailedRestoreRemovesGhosts restores ghost_then_bind while the
// abstract name of its socket is taken: the restore fails at the bind,
// after the task made its unlinked file again (and, its descriptors
// open, removed it), and must leave no ghost and no task behind; once
// the name is free again, a second restore succeeds (a ghost left behind
// would refuse it: "exists, left by an earlier restore").
func TestFailedRestoreRemovesGhosts(t *testing.T) {
	c := startCase(t, "ghost_then_bind")
	c.mustDump()
	name := fmt.Sprintf("@amber-ghost-then-bind-%d", c.pid)
	sk, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(sk, &unix.SockaddrUnix{Name: name}); err != nil {
		t.Fatalf("bind %s: %v", name, err)
	}
	r := c.restoreDetached(c.pidfile())
	unix.Close(sk)
	if r.err == nil || !strings.Contains(r.stderr, "address already in use") {
		t.Fatalf("restore with %s taken: %v, want it refused (address already in use)", name, r)
	}
	if ghosts, _ := filepath.Glob(filepath.Join(c.dir, "*.amber.*.ghost")); len(ghosts) > 0 {
		t.Errorf("the failed restore left %v", ghosts)
	}
	if alive(c.pid) {
		t.Errorf("pid %d runs after the failed restore", c.pid)
	}
	c.mustRestoreDetached()
	c.mustPass()
}

// TestFailedRestoreRemovesGhostsUserns restores ghost_foreign, in a user
// namespace mapping 1,000 ids, whose unlinked file's owner the namespace
// does not map: the task makes the file again, then amber cannot give it
// its owner (the overflow id, 65534, is not mapped either) and the
// restore fails, naming the id, with the ghost made. The failed restore
// must remove it (plan.Program.Temporaries) and leave no task.
func TestFailedRestoreRemovesGhostsUserns(t *testing.T) {
	p, _ := lookupProgram("ghost_foreign")
	p.cloneflags |= unix.CLONE_NEWPID
	p.userns, p.work, p.usernsIDs = true, true, 1000
	p.setup = func(work string) error {
		f := filepath.Join(work, "foreign")
		if err := os.WriteFile(f, []byte("foreign\n"), 0o666); err != nil {
			return err
		}
		if err := os.Chmod(f, 0o666); err != nil { // past the umask
			return err
		}
		return os.Chown(f, 5, 5)
	}
	c := startProgram(t, p)
	tree := descendants(c.pid)
	if r := c.dump(); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	c.reapDumped(tree)
	r := c.restoreDetached(c.pidfile())
	if r.err == nil || !strings.Contains(r.stderr, "uid 65534 is not in the user namespace's uid_map") {
		t.Fatalf("restore: %v, want it refused for the owner 65534", r)
	}
	work := filepath.Join(c.dir, "work")
	if ghosts, _ := filepath.Glob(filepath.Join(work, "*.amber.*.ghost")); len(ghosts) > 0 {
		t.Errorf("the failed restore left %v", ghosts)
	}
	if alive(c.pid) {
		t.Errorf("pid %d runs after the failed restore", c.pid)
	}
}
