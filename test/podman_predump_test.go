package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// podmanKeeper is the loop for Podman: the counter on stdout too, as
// podmanCounter writes it.
var podmanKeeper = keeperLoop("echo $i; ")

// TestPodmanPreCheckpoint: Podman's pre-checkpoint (`podman container
// checkpoint --pre-checkpoint`, runc's --pre-dump) with amber as criu
// leaves the container running; `--with-previous` then checkpoints it
// on top, and the restore gives it back its memory and its counter.
// Then as a migration does it: the pre-checkpoint and the checkpoint
// exported to archives (`--export`), the container removed, and
// restored from both (`--import-previous`, `--import`). Podman logs no
// error on the way (it exports the pre-checkpoint's stats-dump).
func TestPodmanPreCheckpoint(t *testing.T) {
	c := newPodmanCase(t)
	c.runProgram(podmanKeeper)
	n := c.waitAbove(3)
	c.preCheckpoint()
	n = c.waitAbove(n)
	c.checkpointRestore([]string{"--with-previous"}, nil, false)
	c.requireNotLost()

	n = c.waitAbove(c.counter())
	dir := t.TempDir()
	pre, ck := filepath.Join(dir, "pre.tar.gz"), filepath.Join(dir, "checkpoint.tar.gz")
	c.preCheckpoint("--export", pre)
	c.waitAbove(n)
	c.checkpointRestore([]string{"--with-previous", "--export", ck}, []string{"--import-previous", pre, "--import", ck}, true)
	c.requireNotLost()
}

// preCheckpoint pre-checkpoints the running container with the extra
// arguments; it must run on.
func (c *podmanCase) preCheckpoint(args ...string) {
	c.t.Helper()
	out := c.mustPodman(append(append([]string{"container", "checkpoint", "--pre-checkpoint"}, args...), c.name)...)
	if strings.Contains(out, "level=error") {
		c.t.Errorf("podman container checkpoint --pre-checkpoint logged errors:\n%s", out)
	}
	if st := strings.TrimSpace(c.mustPodman("inspect", "-f", "{{.State.Status}}", c.name)); st != "running" {
		c.t.Fatalf("after the pre-checkpoint the container is %s, not running", st)
	}
}

// requireNotLost requires that the restored keeper found its string as
// it was (it stops and leaves /tmp/bad if not).
func (c *podmanCase) requireNotLost() {
	c.t.Helper()
	c.waitAbove(c.counter())
	pid := strings.TrimSpace(c.mustPodman("inspect", "-f", "{{.State.Pid}}", c.name))
	if _, err := os.Stat("/proc/" + pid + "/root/tmp/bad"); err == nil {
		c.t.Fatal("the restored container lost the memory its pre-checkpoint held")
	}
}
