package test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// runcTtyLoop is the terminal container's program: it reads lines from
// its terminal and answers each with a count of the lines read so far,
// the line, the terminal's size as stty sees it from inside, and whether
// the shell has a controlling terminal (/dev/tty opens).
const runcTtyLoop = `i=0; while read l; do i=$((i+1)); c=noctty; (: </dev/tty) 2>/dev/null && c=ctty; echo "got$i:$l:$(/bin/busybox stty size):$c"; done`

// consoleSocket is the --console-socket of a terminal container: runc
// connects to it and sends the pty master as SCM_RIGHTS.
type consoleSocket struct {
	ln     *net.UnixListener
	master chan *os.File
	err    chan error
}

// listenConsole listens on path and receives one master in the
// background.
func listenConsole(t *testing.T, path string) *consoleSocket {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	cs := &consoleSocket{ln: ln, master: make(chan *os.File, 1), err: make(chan error, 1)}
	go func() {
		f, err := cs.receive()
		if err != nil {
			cs.err <- err
			return
		}
		cs.master <- f
	}()
	t.Cleanup(func() { ln.Close() })
	return cs
}

// receive accepts runc's connection and takes the descriptor it sends.
func (cs *consoleSocket) receive() (*os.File, error) {
	conn, err := cs.ln.AcceptUnix()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("console socket: %d control messages (%v), want one", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("console socket: %d descriptors (%v), want one", len(fds), err)
	}
	// Non-blocking, the master goes through Go's poller: reads can time
	// out.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), "pty master"), nil
}

// take waits for the master runc sent.
func (cs *consoleSocket) take(t *testing.T) *os.File {
	t.Helper()
	select {
	case f := <-cs.master:
		t.Cleanup(func() { f.Close() })
		return f
	case err := <-cs.err:
		t.Fatal(err)
	case <-time.After(amberTimeout):
		t.Fatal("runc sent no pty master to the console socket")
	}
	return nil
}

// terminalSpec makes the container's process run on a terminal.
func (c *runcCase) terminalSpec(args ...string) {
	c.updateSpec(func(spec map[string]any) {
		p := spec["process"].(map[string]any)
		p["terminal"] = true
		p["args"] = args
	})
}

// ask writes line to the terminal's master and reads until the answer
// want comes (the terminal echoes the line first).
func ask(master *os.File, line, want string) error {
	if _, err := master.Write([]byte(line + "\n")); err != nil {
		return fmt.Errorf("write to the pty master: %w", err)
	}
	var got bytes.Buffer
	buf := make([]byte, 1024)
	master.SetReadDeadline(time.Now().Add(10 * time.Second))
	for !strings.Contains(got.String(), want) {
		n, err := master.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			return fmt.Errorf("read %q from the pty master: %w; read so far %q", want, err, got.String())
		}
	}
	return nil
}

// TestRuncTerminalCheckpointRestore checkpoints a runc container whose
// process runs on a terminal (--console-socket) with amber as criu, and
// restores it with a new console socket. The dump saves the pty slave
// whose master the test holds (orphan_pts_master); the restore makes a
// new pty, which runc hands to the new console socket. The container's
// shell then answers through the new master with its line count going
// on, sees the window size the test set before the checkpoint, and has
// the new terminal as its controlling terminal.
func TestRuncTerminalCheckpointRestore(t *testing.T) {
	c := newRuncCase(t)
	c.terminalSpec("/bin/busybox", "sh", "-c", runcTtyLoop)
	dir := filepath.Dir(c.state)
	first := listenConsole(t, filepath.Join(dir, "console1.sock"))
	c.mustRunc("run", "-d", "--console-socket", first.ln.Addr().String(), "--bundle", c.bundle, c.id)
	master := first.take(t)
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 77}); err != nil {
		t.Fatal(err)
	}
	if err := ask(master, "ping", "got1:ping:33 77:ctty"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, err := c.runc("checkpoint", "--image-path", c.images, "--work-path", c.work, c.id); err != nil {
		t.Fatalf("checkpoint: %v\n%s\n%s", err, out, c.logs())
	}
	t.Logf("runc checkpoint: %v", time.Since(start))
	master.Close()
	second := listenConsole(t, filepath.Join(dir, "console2.sock"))
	start = time.Now()
	if out, err := c.runc("restore", "-d", "--console-socket", second.ln.Addr().String(), "--image-path", c.images, "--work-path", c.work, "--bundle", c.bundle, c.id); err != nil {
		t.Fatalf("restore: %v\n%s\n%s", err, out, c.logs())
	}
	t.Logf("runc restore: %v", time.Since(start))
	master = second.take(t)
	if err := ask(master, "pong", "got2:pong:33 77:ctty"); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("%w\n%s", err, c.logs())
		}
		t.Fatal(err)
	}
}
