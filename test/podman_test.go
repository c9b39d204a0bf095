package test

import (
	"archive/tar"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// podmanImage is the image the Podman tests import: a busybox-static
// rootfs (no registry is reachable here).
const podmanImage = "localhost/amber-busybox:test"

// podmanCounter is the container's program: a counter kept in the
// shell's memory, written to a file and to stdout (conmon's pipe) ten
// times a second.
const podmanCounter = "i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; echo $i; /bin/busybox sleep 0.1; done"

// podmanCase is one container of Debian's Podman, run with runc (Debian's
// crun has no checkpoint support here), checkpointed and restored with
// amber as the criu that Podman and runc find on PATH.
type podmanCase struct {
	t    *testing.T
	name string
	path string // PATH with amber as criu first
}

func newPodmanCase(t *testing.T) *podmanCase {
	requireAmber(t)
	for _, tool := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(t, tool+" (Debian packages podman and runc)")
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		missing(t, "/bin/busybox (Debian package busybox-static)")
	}
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(testEnv.amber, filepath.Join(bin, "criu")); err != nil {
		t.Fatal(err)
	}
	c := &podmanCase{t: t, name: fmt.Sprintf("amber-podman-%d", time.Now().UnixNano()%1e9), path: bin + ":" + os.Getenv("PATH")}
	c.importImage()
	t.Cleanup(func() { c.podman("rm", "-f", "-t", "0", c.name) })
	return c
}

// importImage imports a rootfs of /bin/busybox and /bin/sh as
// podmanImage.
func (c *podmanCase) importImage() {
	c.t.Helper()
	path := filepath.Join(c.t.TempDir(), "rootfs.tar")
	if err := writeBusyboxTar(path); err != nil {
		c.t.Fatal(err)
	}
	c.mustPodman("import", path, podmanImage)
}

// writeBusyboxTar writes a tar of a rootfs holding /bin/busybox, /bin/sh
// and an empty /tmp.
func writeBusyboxTar(path string) error {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := tar.NewWriter(f)
	for _, h := range []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))},
		{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox"},
	} {
		if err := w.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := w.Write(bb); err != nil {
				return err
			}
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return f.Close()
}

// podman runs podman with amber as criu on PATH and returns its
// combined output.
func (c *podmanCase) podman(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), amberTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = append(os.Environ(), "PATH="+c.path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// mustPodman is podman, failing the test if it fails, with the log
// of amber's dump or restore that runc names in its error, if any.
func (c *podmanCase) mustPodman(args ...string) string {
	c.t.Helper()
	out, err := c.podman(args...)
	if err != nil {
		if m := runcLogFile.FindStringSubmatch(out); m != nil {
			if log, rerr := os.ReadFile(m[1]); rerr == nil {
				err = fmt.Errorf("%w\n=== %s:\n%s", err, m[1], log)
			}
		}
		c.t.Fatal(err)
	}
	return out
}

// runcLogFile finds the log of amber's dump or restore in runc's error.
var runcLogFile = regexp.MustCompile(`log file: (\S+)`)

// run starts the counter container detached, with runc and limits runc
// can set without CAP_SYS_RESOURCE.
func (c *podmanCase) run() {
	c.t.Helper()
	c.runProgram(podmanCounter)
}

// runProgram is run with the shell program prog in place of the counter.
func (c *podmanCase) runProgram(prog string) {
	c.t.Helper()
	c.mustPodman("run", "-d", "--name", c.name, "--runtime", "runc",
		"--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096",
		podmanImage, "/bin/sh", "-c", prog)
}

// counter reads the container's counter through its init's root.
func (c *podmanCase) counter() int {
	c.t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(c.mustPodman("inspect", "-f", "{{.State.Pid}}", c.name)))
	if err != nil {
		c.t.Fatalf("pid of %s: %v", c.name, err)
	}
	return containerCounter(c.t, pid)
}

// waitAbove waits until the counter passes n.
func (c *podmanCase) waitAbove(n int) int {
	c.t.Helper()
	return waitCounterAbove(c.t, c.counter, n)
}

// requireLogged requires that the container's stdout, which conmon
// reads from a pipe the restore handed over (inherit_fd), has a line
// with a number above n: what the restored shell wrote.
func (c *podmanCase) requireLogged(n int) {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines := strings.Fields(c.mustPodman("logs", c.name))
		if len(lines) > 0 {
			if last, err := strconv.Atoi(lines[len(lines)-1]); err == nil && last > n {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("podman logs: no line above %d after restore; last lines %q", n, lines[max(0, len(lines)-3):])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// podmanCheckpointRestore runs podman container checkpoint with the
// extra checkpoint arguments, podman rm if remove, then podman container
// restore with the extra restore arguments, logging how long each took;
// it returns what the checkpoint printed.
func (c *podmanCase) podmanCheckpointRestore(ckArgs, rsArgs []string, remove bool) string {
	c.t.Helper()
	start := time.Now()
	out := c.mustPodman(append(append([]string{"container", "checkpoint"}, ckArgs...), c.name)...)
	c.t.Logf("podman container checkpoint: %v", time.Since(start))
	if remove {
		c.mustPodman("rm", c.name)
	}
	args := append([]string{"container", "restore"}, rsArgs...)
	if !remove {
		args = append(args, c.name)
	}
	start = time.Now()
	c.mustPodman(args...)
	c.t.Logf("podman container restore: %v", time.Since(start))
	return out
}

// checkpointRestore checkpoints the running container with the extra
// checkpoint arguments, removes it if remove, restores it with the
// extra restore arguments, and requires its counter to go on from where
// it was, on disk and on its stdout.
func (c *podmanCase) checkpointRestore(ckArgs, rsArgs []string, remove bool) {
	c.t.Helper()
	before := c.waitAbove(3)
	if out := c.podmanCheckpointRestore(ckArgs, rsArgs, remove); strings.Contains(out, "level=error") {
		c.t.Errorf("podman container checkpoint logged errors:\n%s", out)
	}
	after := c.counter()
	if after < before {
		c.t.Fatalf("counter %d after restore, was %d at the checkpoint: it started again", after, before)
	}
	c.requireLogged(c.waitAbove(after))
}

// TestPodmanCheckpointRestore runs a busybox container with Podman and
// runc, checkpoints and restores it with amber as criu, then exports a
// checkpoint to an archive, removes the container and restores it from
// the archive. Its counter goes on each time, in its memory, on disk
// and on the stdout pipe conmon holds: Podman hands the new pipes to
// the restore (inherit_fd), and the container's network namespace
// (runc's external net[INO]:extRootNetNS, joined again through
// inherit_fd). crit must decode every image of the exported checkpoint.
func TestPodmanCheckpointRestore(t *testing.T) {
	c := newPodmanCase(t)
	c.run()
	c.checkpointRestore(nil, nil, false)
	archive := filepath.Join(t.TempDir(), "checkpoint.tar.gz")
	c.checkpointRestore([]string{"--export", archive}, []string{"--import", archive}, true)
	if crit := critCommand(t); crit != nil {
		dir := t.TempDir()
		if out, err := exec.Command("tar", "-xf", archive, "-C", dir, "checkpoint").CombinedOutput(); err != nil {
			t.Fatalf("tar -xf %s checkpoint: %v\n%s", archive, err, out)
		}
		// Podman's default profile puts the container under seccomp filters.
		if seen := critDecodesDir(t, crit, filepath.Join(dir, "checkpoint")); !seen["seccomp.img"] {
			t.Errorf("no seccomp.img in the exported checkpoint")
		}
	}
}
