package compel

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestWaitOwnedProgress checks that a wait for an owned task outlasts
// its limit while the task works (a shell counting for many limits) and
// kills one that does not (a sleep) after about two limits. The limit is
// long enough that a busy task is not starved of every CPU tick for a
// whole limit on a loaded machine (at 200 ms one was, in a CI run).
func TestWaitOwnedProgress(t *testing.T) {
	const limit = 500 * time.Millisecond
	busy := start(t, "i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done; exit 7")
	began := time.Now()
	_, ws, err := waitOwned(busy, limit)
	if err != nil || !ws.Exited() || ws.ExitStatus() != 7 {
		t.Fatalf("busy task: %v, %v; want its exit status 7", ws, err)
	}
	if took := time.Since(began); took < 3*limit {
		t.Fatalf("busy task ended after %v: too soon to have needed more than its limit", took)
	}
	idle := start(t, "exec sleep 60")
	began = time.Now()
	_, ws, err = waitOwned(idle, limit)
	if !errors.Is(err, ErrTimeout) || !ws.Signaled() {
		t.Fatalf("idle task: %v, %v; want it killed for want of progress", ws, err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("idle task killed after %v, want about %v", took, 2*limit)
	}
}

// start starts sh -c script and returns its pid, to be waited for by
// the test.
func start(t *testing.T, script string) int {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill() })
	return pid
}
