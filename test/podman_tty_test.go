package test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runTerminal starts a container detached on a terminal with its input
// open (podman run -d -i -t): runc hands the pty master to conmon
// through its console socket, conmon logs what the container writes to
// the terminal and writes what comes on its attach socket to the master.
func (c *podmanCase) runTerminal(script string) {
	c.t.Helper()
	c.mustPodman("run", "-d", "-i", "-t", "--name", c.name, "--runtime", "runc",
		"--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096",
		podmanImage, "/bin/sh", "-c", script)
}

// askTerminal connects to conmon's attach socket, writes line to the
// container's terminal, and reads until want comes back. The socket sits
// in the container's static directory, whose path is too long for a
// socket address: it is reached through /proc/self/fd, as Podman does.
func (c *podmanCase) askTerminal(line, want string) error {
	dir, err := os.Open(strings.TrimSpace(c.mustPodman("inspect", "-f", "{{.StaticDir}}", c.name)))
	if err != nil {
		return err
	}
	defer dir.Close()
	path := filepath.Join(fmt.Sprintf("/proc/self/fd/%d", dir.Fd()), "attach")
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return fmt.Errorf("conmon's attach socket: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(line + "\n")); err != nil {
		return fmt.Errorf("write to conmon's attach socket: %w", err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got strings.Builder
	buf := make([]byte, 8193)
	for !strings.Contains(got.String(), want) {
		n, err := conn.Read(buf)
		if n > 0 {
			got.Write(buf[1:n]) // the first byte says which stream
		}
		if err != nil {
			return fmt.Errorf("read %q from conmon's attach socket: %w; read so far %q", want, err, got.String())
		}
	}
	return nil
}

// TestPodmanTerminalCheckpointRestore checkpoints a Podman container
// whose shell runs on a terminal (podman run -i -t) with amber as criu,
// and restores it: the dump saves the pty slave whose master conmon
// holds (orphan_pts_master), the restore makes a new pty whose master
// runc hands to the new conmon. The shell then answers a line written
// through conmon's attach socket with its line count going on, still
// has the terminal as its controlling terminal, and its answer is in
// podman logs; then again through an exported archive, restored after
// the container was removed.
func TestPodmanTerminalCheckpointRestore(t *testing.T) {
	c := newPodmanCase(t)
	c.runTerminal(`i=0; while read l; do i=$((i+1)); c=noctty; (: </dev/tty) 2>/dev/null && c=ctty; echo "got$i:$l:$c"; done`)
	for i, line := range []string{"one", "two"} {
		if err := c.askTerminal(line, fmt.Sprintf("got%d:%s:ctty", i+1, line)); err != nil {
			t.Fatal(err)
		}
	}
	c.checkpointRestoreTerminal(nil, nil, false, "three", "got3:three:ctty")
	archive := filepath.Join(t.TempDir(), "checkpoint.tar.gz")
	c.checkpointRestoreTerminal([]string{"--export", archive}, []string{"--import", archive}, true, "four", "got4:four:ctty")
}

// checkpointRestoreTerminal checkpoints the terminal container with the
// extra checkpoint arguments, removes it if remove, restores it with the
// extra restore arguments, and requires the answer want to come back on
// new terminal, through conmon's attach socket and in podman logs.
func (c *podmanCase) checkpointRestoreTerminal(ckArgs, rsArgs []string, remove bool, line, want string) {
	c.t.Helper()
	c.podmanCheckpointRestore(ckArgs, rsArgs, remove)
	if err := c.askTerminal(line, want); err != nil {
		c.t.Fatalf("after restore: %v", err)
	}
	if logs := c.mustPodman("logs", c.name); !strings.Contains(logs, want) {
		c.t.Fatalf("podman logs has no answer %q of the restored shell:\n%s", want, logs)
	}
}
