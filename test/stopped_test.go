package test

import (
	"testing"
)

// TestStoppedLeaveRunning dumps zdtm/static/stopped_tree with
// --leave-running: its children, stopped by SIGSTOP (three threads, more
// SIGSTOPs pending) and SIGTSTP, must stay stopped through the dump and
// after it, without running an instruction, while the parent runs on; the
// program checks that after SIGTERM. The images must then restore them
// stopped once the original is gone.
func TestStoppedLeaveRunning(t *testing.T) {
	c := startCase(t, "stopped_tree")
	kids := childrenOf(c.pid)
	if r := c.dump("--leave-running"); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	requireStopped(t, kids)
	c.mustPass()
	c.mustRestoreDetached()
	c.mustPass()
}

// TestStoppedFailedDump makes amber refuse zdtm/static/stopped_refused
// after it froze and infected its stopped children (a later child holds
// a guard page): the failed dump must leave them stopped as they were.
func TestStoppedFailedDump(t *testing.T) {
	c := startCase(t, "stopped_refused")
	kids := childrenOf(c.pid)
	requireFailure(t, c.dump(), "guard pages")
	requireStopped(t, kids[:2])
	c.mustPass()
}

// requireStopped requires that each of pids is in state T, stopped for
// its job control (not traced, t).
func requireStopped(t *testing.T, pids []int) {
	t.Helper()
	if len(pids) == 0 {
		t.Fatal("no children to look at")
	}
	for _, pid := range pids {
		st, err := readStat(pid)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != 'T' {
			t.Fatalf("pid %d in state %c after the dump, want T", pid, st.State)
		}
	}
}
