package test

import "testing"

// TestPtyLeaveRunning dumps pty00 with --leave-running: reading the bytes
// queued in its pty takes them, so the dump must put them back for the
// original, which then checks them (and the rest of its terminal state)
// as after a restore.
func TestPtyLeaveRunning(t *testing.T) {
	c := startCase(t, "pty00")
	if r := c.dump("--leave-running"); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	c.mustPass()
}
