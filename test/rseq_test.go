package test

import "testing"

// TestRseqLeaveRunning dumps rseq_abort with --leave-running: frozen
// inside its rseq critical section, the original must go on from the
// section's abort handler, not inside the section unprotected.
func TestRseqLeaveRunning(t *testing.T) {
	c := startCase(t, "rseq_abort")
	if r := c.dump("--leave-running"); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	c.mustPass()
}
