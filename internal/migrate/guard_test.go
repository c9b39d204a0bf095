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
	g := watching(t, cmd.Process.Pid)
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
	g := watching(t, cmd.Process.Pid)
	if err := g.release(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("the watched process ended (%v) after the guard was released", err)
	default:
	}
}

// watching starts a guard watching pid.
func watching(t *testing.T, pid int) *guard {
	g, err := startGuard()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.watch(pid); err != nil {
		g.fire()
		t.Fatal(err)
	}
	return g
}

// TestGuardUnarmed: a guard fired or released before it watched a tree
// kills nothing and ends.
func TestGuardUnarmed(t *testing.T) {
	for _, end := range []string{"fire", "release"} {
		g, err := startGuard()
		if err != nil {
			t.Fatal(err)
		}
		if end == "fire" {
			g.fire()
		} else if err := g.release(); err != nil {
			t.Fatalf("release: %v", err)
		}
		if !g.cmd.ProcessState.Success() {
			t.Fatalf("%s before watching: the guard ended %v", end, g.cmd.ProcessState)
		}
	}
}
