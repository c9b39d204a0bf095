package migrate

import (
	"os/exec"
	"testing"
	"time"
)

// startSleeper starts a process for a guard to watch, reaped by the
// returned channel.
func startSleeper(t *testing.T) (*exec.Cmd, chan error) {
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Skipf("sleep: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, done
}

// TestGuardFires: a guard whose pipe closes without "in" (amber gone)
// kills the process it watches.
func TestGuardFires(t *testing.T) {
	cmd, done := startSleeper(t)
	g, err := startGuard(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	g.fire()
	select {
	case err := <-done:
		if cmd.ProcessState.Exited() {
			t.Fatalf("the watched process exited (%v); want it killed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watched process runs after the guard fired")
	}
}

// TestGuardReleased: a guard told every page is in leaves the process
// alone.
func TestGuardReleased(t *testing.T) {
	cmd, done := startSleeper(t)
	g, err := startGuard(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.release(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("the watched process ended (%v) after the guard was released", err)
	default:
	}
}
