package test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestShellJob runs zdtm/static/shell_job00 as a job on a terminal: a
// pty this test makes, whose session the job leads (as `setsid -c` would
// start it). It is dumped with --shell-job and killed; meanwhile the
// terminal goes back to a shell's mode and changes size; then amber
// restores it with --shell-job, amber's standard input, output and error
// being the same terminal. The job must find its terminal as it left it:
// termios, window size, its controlling terminal, the foreground.
func TestShellJob(t *testing.T) { testShellJob(t, 0) }

// TestShellJobPidNamespace is TestShellJob with the job the init of a pid
// namespace of its own: restored in a new one, where amber's PID names
// no process, the job takes amber's terminal (its descriptors and its
// controlling terminal) through the pidfd of amber that the root holds,
// not by amber's PID.
func TestShellJobPidNamespace(t *testing.T) { testShellJob(t, unix.CLONE_NEWPID) }

// testShellJob runs TestShellJob with the job started in new namespaces
// of cloneflags.
func testShellJob(t *testing.T, cloneflags uintptr) {
	requireAmber(t)
	dir := t.TempDir()
	if err := compileProgram("zdtm", dir, program{name: "shell_job00"}); err != nil {
		t.Fatal(err)
	}
	pty := openTestPty(t)
	job := exec.Command("./shell_job00")
	job.Dir, job.Stdin, job.Stdout, job.Stderr = dir, pty.slave, pty.slave, pty.slave
	job.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Cloneflags: cloneflags}
	if err := job.Start(); err != nil {
		t.Fatal(err)
	}
	pid := job.Process.Pid
	job.Process.Release()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("=== terminal:\n%s", pty.output())
			for _, name := range []string{"dump.log", "restore.log"} {
				if b, err := os.ReadFile(filepath.Join(dir, "images", name)); err == nil {
					t.Logf("=== %s:\n%s", name, b)
				}
			}
		}
		killChildren(t)
	})
	if err := pty.waitLine("ready", readyTimeout); err != nil {
		t.Fatalf("shell_job00 (pid %d): %v", pid, err)
	}
	images := filepath.Join(dir, "images")
	if err := os.Mkdir(images, 0o755); err != nil {
		t.Fatal(err)
	}
	dump := runAmber(testEnv.amber, dir, program{}, "dump", "-t", strconv.Itoa(pid), "-D", images, "--shell-job", "-v4", "-o", "dump.log")
	if dump.err != nil {
		t.Fatalf("dump: %v", dump)
	}
	if _, err := waitPid(pid, exitTimeout); err != nil {
		t.Fatalf("after dump: %v", err)
	}
	pty.likeAShell(t)
	pid = restoreShellJob(t, dir, images, pty.slave, pid, cloneflags&unix.CLONE_NEWPID != 0)
	if err := unix.Kill(pid, unix.SIGTERM); err != nil {
		t.Fatalf("SIGTERM pid %d: %v", pid, err)
	}
	ws, err := waitPid(pid, exitTimeout)
	if err != nil {
		t.Fatalf("after SIGTERM: %v", err)
	}
	if err := pty.waitLine("PASS", time.Second); err != nil || !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("shell_job00: %s, %v; want PASS and exit status 0", describeStatus(ws), err)
	}
}

// restoreShellJob runs amber restore -d --shell-job on images with term
// as its standard input, output and error, and checks that pid is back,
// or, for the init of a pid namespace (pidns), that some PID is: it
// returns the restored PID.
func restoreShellJob(t *testing.T, dir, images string, term *os.File, pid int, pidns bool) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), amberTimeout)
	defer cancel()
	pidfile := filepath.Join(dir, "pid")
	cmd := exec.CommandContext(ctx, testEnv.amber, "restore", "-D", images, "--shell-job", "-d", "--pidfile", pidfile, "-v4", "-o", "restore.log")
	cmd.Dir, cmd.Stdin, cmd.Stdout, cmd.Stderr = dir, term, term, term
	if err := cmd.Run(); err != nil {
		t.Fatalf("amber restore: %v", err)
	}
	got, err := readPidfile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	if (got != pid && !pidns) || !alive(got) {
		t.Fatalf("restored pid %d (alive %v), dumped pid %d", got, alive(got), pid)
	}
	return got
}

// testPty is a pty the test holds both ends of; what is written to the
// slave collects in out.
type testPty struct {
	master, slave *os.File
	mu            sync.Mutex
	out           bytes.Buffer
}

// openTestPty opens a pty and reads its master until the test ends.
func openTestPty(t *testing.T) *testPty {
	t.Helper()
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(m)
		t.Fatal(err)
	}
	s, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(m), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		unix.Close(m)
		t.Fatalf("TIOCGPTPEER: %v", errno)
	}
	// Non-blocking, the master goes to Go's poller: Close ends a Read.
	if err := unix.SetNonblock(m, true); err != nil {
		t.Fatal(err)
	}
	p := &testPty{master: os.NewFile(uintptr(m), "pty master"), slave: os.NewFile(s, "pty slave")}
	done := make(chan struct{})
	go p.read(done)
	t.Cleanup(func() {
		p.slave.Close()
		p.master.Close()
		<-done
	})
	return p
}

func (p *testPty) read(done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 4096)
	for {
		n, err := p.master.Read(buf)
		p.mu.Lock()
		p.out.Write(buf[:n])
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// output is what the terminal showed so far.
func (p *testPty) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.ReplaceAll(p.out.String(), "\r", "")
}

// waitLine waits for a line that is exactly line.
func (p *testPty) waitLine(line string, timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		for _, l := range strings.Split(p.output(), "\n") {
			if l == line {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return os.ErrDeadlineExceeded
		}
	}
}

// likeAShell does to the terminal what a shell and its user would while
// the job is away: canonical mode with echo, and a new window size.
func (p *testPty) likeAShell(t *testing.T) {
	t.Helper()
	fd := int(p.slave.Fd())
	tm, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tm.Lflag |= unix.ICANON | unix.ECHO
	tm.Cc[unix.VMIN], tm.Cc[unix.VTIME], tm.Cc[unix.VERASE] = 1, 0, 0x7f
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, tm); err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80}); err != nil {
		t.Fatal(err)
	}
}
