package test

import (
	"testing"
	"time"
)

// TestDumpTimeout dumps a process that cannot stop (blocked in vfork
// until its child exits, 3 s later) with --timeout 1: the dump must give
// up within a few seconds, saying it timed out, and the process must go
// on as it was once its child is gone.
func TestDumpTimeout(t *testing.T) {
	c := startCase(t, "vfork_wait")
	time.Sleep(100 * time.Millisecond) // into vfork
	start := time.Now()
	r := c.dump("--timeout", "1", "--leave-running")
	took := time.Since(start)
	requireFailure(t, r, "did not stop (in uninterruptible sleep in")
	if took > 2500*time.Millisecond {
		t.Fatalf("dump gave up after %v, want about 1 s", took)
	}
	c.mustPass()
}
