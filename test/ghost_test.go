package test

import "testing"

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
