package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lazyMiB is the memory of the lazy tests' programs.
const lazyMiB = "256"

// lazyDaemon is an amber lazy-pages run for a test.
type lazyDaemon struct {
	t    *testing.T
	cmd  *exec.Cmd
	log  string
	out  *os.File
	done chan error
}

// startLazyDaemon starts amber lazy-pages on the case's images, logging
// at debug level into lazy.log there, and waits until it listens
// (--status-fd).
func (c *zcase) startLazyDaemon(extra ...string) *lazyDaemon {
	c.t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		c.t.Fatal(err)
	}
	defer r.Close()
	out, err := unlinkedTemp("lazy-pages-*.out")
	if err != nil {
		c.t.Fatal(err)
	}
	args := append([]string{"lazy-pages", "-D", c.images, "-o", "lazy.log", "-v4", "--status-fd", "3"}, extra...)
	cmd := exec.Command(testEnv.amber, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = c.dir, out, out, []*os.File{w}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	w.Close()
	d := &lazyDaemon{t: c.t, cmd: cmd, log: filepath.Join(c.images, "lazy.log"), out: out, done: make(chan error, 1)}
	go func() { d.done <- cmd.Wait() }()
	c.t.Cleanup(d.stop)
	var b [1]byte
	if n, err := r.Read(b[:]); n != 1 || b[0] != 0 {
		c.t.Fatalf("lazy-pages did not get ready (%v):\n%s", err, readAll(out))
	}
	return d
}

// mustExit requires that the daemon ends by itself, successfully, once
// every page is in, and returns its log.
func (d *lazyDaemon) mustExit() string {
	d.t.Helper()
	select {
	case err := <-d.done:
		d.done <- err
		if err != nil {
			d.t.Fatalf("lazy-pages: %v\n%s", err, readAll(d.out))
		}
	case <-time.After(exitTimeout):
		d.t.Fatalf("lazy-pages still running %v after the restore", exitTimeout)
	}
	b, err := os.ReadFile(d.log)
	if err != nil {
		d.t.Fatal(err)
	}
	return string(b)
}

// stop kills the daemon if it still runs.
func (d *lazyDaemon) stop() {
	select {
	case err := <-d.done:
		d.done <- err
	default:
		d.cmd.Process.Kill()
		<-d.done
	}
	if d.t.Failed() {
		b, _ := os.ReadFile(d.log)
		d.t.Logf("=== lazy-pages:\n%s\n%s", readAll(d.out), b)
	}
	d.out.Close()
}

// mustRestoreLazily dumps the case's program, starts the daemon, makes
// go.now (which the program acts on as soon as it runs again), restores
// it with --lazy-pages, lets the program check its memory and waits for
// the daemon to end: it returns the daemon's log.
func (c *zcase) mustRestoreLazily() string {
	c.t.Helper()
	c.mustDump()
	d := c.startLazyDaemon()
	if err := os.WriteFile(filepath.Join(c.dir, "go.now"), nil, 0o644); err != nil {
		c.t.Fatal(err)
	}
	pidfile := c.pidfile()
	if r := c.amber(c.prog, c.restoreArgs(pidfile, "-d", "--lazy-pages")...); r.err != nil {
		c.t.Fatalf("restore failed: %v", r)
	}
	c.checkRestoredPid(pidfile)
	log := d.mustExit()
	c.mustPass()
	return log
}

// lazyAttempts is how many times a lazy test runs its program until the
// program acted on memory the daemon had not brought in yet, which is
// what the test is about: on a loaded machine the program, each of whose
// first faults waits for the daemon to get a CPU, may start too late.
const lazyAttempts = 3

// restoreLazilyUntil runs the named program, restores it lazily, and
// requires that the program passes; it does so again until the daemon
// logged each of what, at most lazyAttempts times.
func restoreLazilyUntil(t *testing.T, name string, what ...string) {
	t.Helper()
	for i := 0; i < lazyAttempts; i++ {
		log := startCase(t, name).mustRestoreLazily()
		missing := ""
		for _, w := range what {
			if !strings.Contains(log, w) {
				missing = w
			}
		}
		if missing == "" {
			return
		}
		t.Logf("attempt %d: the daemon did not log %q (the program acted once every page was in):\n%s", i+1, missing, log)
	}
	t.Fatalf("in %d attempts, the program never acted before the daemon had brought every page in", lazyAttempts)
}

// TestLazyRestore restores lazy_mem lazily: it runs before its memory is
// in, moves, unmaps and drops memory the daemon has not brought in yet,
// and reads all of it from four threads at once. Every page must be
// right, the dropped ones zero.
func TestLazyRestore(t *testing.T) {
	// Enough memory that the program, slow to start on a loaded machine,
	// usually acts before the background copy reaches the regions it
	// changes.
	t.Setenv("LAZY_MIB", lazyMiB)
	restoreLazilyUntil(t, "lazy_mem", "moved from", "dropped (event 0x15)")
}

// TestLazyRestoreFork restores lazy_fork lazily: it forks as soon as it
// runs, its child forks too, and all three check their memory while the
// daemon serves each of them.
func TestLazyRestoreFork(t *testing.T) {
	t.Setenv("LAZY_MIB", lazyMiB)
	restoreLazilyUntil(t, "lazy_fork", ": fork")
}

// TestLazyRestoreNoDaemon: a lazy restore with no daemon to serve it
// fails naming the socket it wanted, and leaves no process behind.
func TestLazyRestoreNoDaemon(t *testing.T) {
	c := startCase(t, "lazy_mem")
	c.mustDump()
	r := c.amber(c.prog, c.restoreArgs(c.pidfile(), "-d", "--lazy-pages")...)
	requireFailure(t, r, "lazy-pages.socket")
	c.requireLive()
}
