package test

import "testing"

// TestFreezeSignalFlood dumps zdtm/static/signal_flood, whose threads
// take a timer's signal every 20 microseconds, many times over with
// --leave-running: a signal taken between amber's interrupt and its stop
// answers the interrupt, and amber, which passed the signal on without
// asking again, then waited for a stop that never came (the dump hung in
// "Freezing the tree"). Every dump must end, the program run on, and
// the last dump restore with the threads' timers working.
func TestFreezeSignalFlood(t *testing.T) {
	c := startCase(t, "signal_flood")
	for i := 0; i < 20; i++ {
		if r := c.dump("--leave-running", "--timeout", "5"); r.err != nil {
			t.Fatalf("dump %d of 20: %v", i+1, r)
		}
	}
	c.mustDump()
	c.mustRestoreDetached()
	c.mustPass()
}
