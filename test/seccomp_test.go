package test

import "testing"

// TestSeccompLeaveRunning dumps a tree under seccomp filters with
// --leave-running: the original must be under its filters again once the
// dump lets it go (the dump suspends them only while it traces the tree),
// and the images must still restore with them once it is gone.
func TestSeccompLeaveRunning(t *testing.T) {
	c := startCase(t, "seccomp_chain")
	if r := c.dump("--leave-running"); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	c.mustPass()
	c.mustRestoreDetached()
	c.mustPass()
}
