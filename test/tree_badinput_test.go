package test

import (
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestTreeMemberUntraceable dumps a tree one of whose members is already
// traced by someone else (this test): the dump must fail naming that
// member, and every member must go on running as before.
func TestTreeMemberUntraceable(t *testing.T) {
	c := startCase(t, "fork_cow")
	kids := childrenOf(c.pid)
	if len(kids) == 0 {
		t.Fatal("fork_cow has no children")
	}
	victim := kids[len(kids)-1]
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.PtraceSeize(victim); err != nil {
		t.Fatalf("seize pid %d: %v", victim, err)
	}
	r := c.dump()
	// A tracee must be stopped to be detached.
	if err := unix.PtraceInterrupt(victim); err != nil {
		t.Fatalf("interrupt pid %d: %v", victim, err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(victim, &ws, unix.WALL, nil); err != nil {
		t.Fatalf("wait pid %d: %v", victim, err)
	}
	if err := unix.PtraceDetach(victim); err != nil {
		t.Fatalf("detach pid %d: %v", victim, err)
	}
	requireFailureNamingPid(t, r, victim)
	for _, pid := range append([]int{c.pid}, kids...) {
		st, err := readStat(pid)
		if err != nil {
			t.Fatalf("pid %d of the tree is gone after a failed dump: %v", pid, err)
		}
		if st.State == 't' || st.State == 'T' {
			t.Fatalf("pid %d of the tree left stopped (state %c) after a failed dump", pid, st.State)
		}
	}
	c.mustPass()
}

// TestTreePidInUse restores a tree while one of its PIDs is still taken:
// amber must name the PID and its holder and leave no process behind.
func TestTreePidInUse(t *testing.T) {
	c := startCase(t, "fork_cow")
	tree := descendants(c.pid)
	if r := c.dump("--leave-running"); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	// Kill all but the last child, which keeps its PID.
	holder := tree[len(tree)-1]
	for _, pid := range append([]int{c.pid}, tree[:len(tree)-1]...) {
		unix.Kill(pid, unix.SIGKILL)
	}
	for _, pid := range append([]int{c.pid}, tree[:len(tree)-1]...) {
		if err := reapOrphan(pid, exitTimeout); err != nil {
			t.Fatal(err)
		}
	}
	before := allPids()
	r := c.restoreDetached(c.pidfile())
	requireFailureNamingPid(t, r, holder)
	requireFailure(t, r, "fork_cow")
	time.Sleep(50 * time.Millisecond)
	for _, pid := range allPids() {
		if !slices.Contains(before, pid) && (pid == c.pid || slices.Contains(tree, pid)) {
			t.Fatalf("failed restore left pid %d behind", pid)
		}
	}
	if _, err := readStat(c.pid); err == nil {
		t.Fatalf("failed restore left the root pid %d behind", c.pid)
	}
}
