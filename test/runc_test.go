package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runcCounter is the container's program: a counter written to a file
// on its tmpfs ten times a second.
const runcCounter = "i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; /bin/busybox sleep 0.1; done"

// runcCase is one container of Debian's runc, its bundle a busybox
// rootfs, its state under a root of its own.
type runcCase struct {
	t      *testing.T
	id     string
	bundle string
	state  string // runc --root
	images string
	work   string
}

// newRuncCase writes a bundle: rootfs with /bin/busybox
// (busybox-static), config.json from `runc spec`, edited: no terminal,
// the counter loop, a tmpfs on /tmp.
func newRuncCase(t *testing.T) *runcCase {
	requireAmber(t)
	if _, err := exec.LookPath("runc"); err != nil {
		missing(t, "runc (Debian package runc)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		missing(t, "/bin/busybox (Debian package busybox-static)")
	}
	dir := t.TempDir()
	c := &runcCase{t: t, id: fmt.Sprintf("amber-runc-%d", time.Now().UnixNano()%1e9), bundle: filepath.Join(dir, "bundle"),
		state: filepath.Join(dir, "state"), images: filepath.Join(dir, "images"), work: filepath.Join(dir, "work")}
	for _, d := range []string{"rootfs/bin", "rootfs/proc", "rootfs/sys", "rootfs/dev", "rootfs/tmp"} {
		if err := os.MkdirAll(filepath.Join(c.bundle, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{c.state, c.images, c.work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := copyFile("/bin/busybox", filepath.Join(c.bundle, "rootfs/bin/busybox")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(c.bundle, "rootfs/bin/sh")); err != nil {
		t.Fatal(err)
	}
	c.mustRunc("spec", "--bundle", c.bundle)
	c.editSpec()
	t.Cleanup(func() { c.runc("delete", "-f", c.id) })
	return c
}

// editSpec edits config.json as the test needs: the counter's shell
// loop, off any terminal, and a tmpfs on /tmp.
func (c *runcCase) editSpec() {
	c.updateSpec(func(spec map[string]any) {
		p := spec["process"].(map[string]any)
		p["terminal"] = false
		p["args"] = []string{"/bin/busybox", "sh", "-c", runcCounter}
		spec["mounts"] = append(spec["mounts"].([]any), map[string]any{
			"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev", "mode=1777"}})
	})
}

// updateSpec reads config.json, lets edit change it and writes it back.
func (c *runcCase) updateSpec(edit func(spec map[string]any)) {
	path := filepath.Join(c.bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		c.t.Fatal(err)
	}
	edit(spec)
	if b, err = json.MarshalIndent(spec, "", "\t"); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// runc runs runc with its state root and amber as criu. Its stdin and
// stdout are /dev/null; its stderr goes through an unlinked file. A
// detached container keeps runc's stdio as its own, and a host file
// cannot be dumped (CRIU refuses it too: "Can't lookup mount"): `run`
// gets /dev/null for stderr as well, and writes its errors to --log.
func (c *runcCase) runc(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), amberTimeout)
	defer cancel()
	errf, err := unlinkedTemp("runc-*.stderr")
	if err != nil {
		return "", err
	}
	defer errf.Close()
	argv := []string{"--root", c.state, "--criu", testEnv.amber}
	runLog := filepath.Join(filepath.Dir(c.state), "run.log")
	if args[0] == "run" {
		argv = append(argv, "--log", runLog)
	}
	cmd := exec.CommandContext(ctx, "runc", append(argv, args...)...)
	cmd.Dir = c.bundle
	if args[0] != "run" {
		cmd.Stderr = errf
	}
	err = cmd.Run()
	out := readAll(errf)
	if args[0] == "run" {
		b, _ := os.ReadFile(runLog)
		out = string(b)
	}
	if err != nil {
		return out, fmt.Errorf("runc %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

func (c *runcCase) mustRunc(args ...string) {
	c.t.Helper()
	if _, err := c.runc(args...); err != nil {
		c.t.Fatal(err)
	}
}

// initPid is the host pid of the container's init (runc state).
func (c *runcCase) initPid() int {
	c.t.Helper()
	out, err := exec.Command("runc", "--root", c.state, "state", c.id).Output()
	if err != nil {
		c.t.Fatalf("runc state: %v", err)
	}
	var st struct {
		Pid    int    `json:"pid"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.Status != "running" {
		c.t.Fatalf("runc state: %s (%v)", out, err)
	}
	return st.Pid
}

// counter reads the container's counter through its init's root.
func (c *runcCase) counter() int {
	c.t.Helper()
	return containerCounter(c.t, c.initPid())
}

// waitAbove waits until the counter passes n.
func (c *runcCase) waitAbove(n int) int {
	c.t.Helper()
	return waitCounterAbove(c.t, c.counter, n)
}

// containerCounter reads the counter a container's shell loop keeps in
// /tmp/counter, through the root of its init, pid.
func containerCounter(t *testing.T, pid int) int {
	t.Helper()
	path := fmt.Sprintf("/proc/%d/root/tmp/counter", pid)
	var last error
	for i := 0; i < 50; i++ {
		b, err := os.ReadFile(path)
		if n, cerr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && cerr == nil {
			return n
		}
		last = err
		time.Sleep(20 * time.Millisecond) // between truncation and write
	}
	t.Fatalf("counter %s: %v", path, last)
	return 0
}

// waitCounterAbove waits until read gives more than n.
func waitCounterAbove(t *testing.T, read func() int, n int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if v := read(); v > n {
			return v
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("counter stayed at or below %d", n)
	return 0
}

// logs adds amber's logs of the checkpoint and the restore to the
// failure.
func (c *runcCase) logs() string {
	var b strings.Builder
	for _, p := range []string{filepath.Join(c.images, "dump.log"), filepath.Join(c.work, "dump.log"), filepath.Join(c.images, "restore.log"), filepath.Join(c.work, "restore.log")} {
		if data, err := os.ReadFile(p); err == nil {
			fmt.Fprintf(&b, "=== %s:\n%s\n", p, data)
		}
	}
	return b.String()
}

// TestRuncCheckpointRestore runs a busybox container with runc, checkpoints
// it with amber as criu, restores it detached, and requires its counter
// to go on from where it was: not from zero, and not stuck. crit must
// decode every image of the checkpoint (namespaces, mounts, tmpfs).
func TestRuncCheckpointRestore(t *testing.T) {
	c := newRuncCase(t)
	c.mustRunc("run", "-d", "--bundle", c.bundle, c.id)
	before := c.waitAbove(3)
	start := time.Now()
	if out, err := c.runc("checkpoint", "--image-path", c.images, "--work-path", c.work, c.id); err != nil {
		t.Fatalf("checkpoint: %v\n%s\n%s", err, out, c.logs())
	}
	t.Logf("runc checkpoint: %v", time.Since(start))
	if crit := critCommand(t); crit != nil {
		seen := critDecodesDir(t, crit, c.images)
		for _, want := range []string{"mountpoints-", "utsns-", "ipcns-var-", "tmpfs-dev-"} {
			if !anyPrefix(seen, want) {
				t.Errorf("no %s*.img in the container's images", want)
			}
		}
	}
	start = time.Now()
	if out, err := c.runc("restore", "-d", "--image-path", c.images, "--work-path", c.work, "--bundle", c.bundle, c.id); err != nil {
		t.Fatalf("restore: %v\n%s\n%s", err, out, c.logs())
	}
	t.Logf("runc restore: %v", time.Since(start))
	after := c.counter()
	if after < before {
		t.Fatalf("counter %d after restore, was %d at the checkpoint: it started again", after, before)
	}
	c.waitAbove(after)
}

// anyPrefix reports whether a name in names starts with prefix.
func anyPrefix(names map[string]bool, prefix string) bool {
	for name := range names {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}
