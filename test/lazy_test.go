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

// bgAmber is an amber run in the background for a test: lazy-pages, or
// a dump --lazy-pages serving its pages.
type bgAmber struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	log  string
	out  *os.File
	done chan error
}

// startLazyDaemon starts amber lazy-pages on the case's images, logging
// at debug level into lazy.log there, and waits until it listens
// (--status-fd).
func (c *zcase) startLazyDaemon(extra ...string) *bgAmber {
	c.t.Helper()
	return c.startReady("lazy.log", append([]string{"lazy-pages", "-D", c.images}, extra...)...)
}

// startReady starts amber with args, logging at debug level into log in
// the images directory, and waits until it is ready (--status-fd).
func (c *zcase) startReady(log string, args ...string) *bgAmber {
	c.t.Helper()
	return c.startReadyBin(testEnv.amber, log, args...)
}

// startReadyBin is startReady of bin, amber or CRIU.
func (c *zcase) startReadyBin(bin, log string, args ...string) *bgAmber {
	c.t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		c.t.Fatal(err)
	}
	defer r.Close()
	out, err := unlinkedTemp(args[0] + "-*.out")
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(bin, append(args, "-o", log, "-v4", "--status-fd", "3")...)
	cmd.Dir, cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = c.dir, out, out, []*os.File{w}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	w.Close()
	d := &bgAmber{t: c.t, name: args[0], cmd: cmd, log: filepath.Join(c.images, log), out: out, done: make(chan error, 1)}
	go func() { d.done <- cmd.Wait() }()
	c.t.Cleanup(d.stop)
	var b [1]byte
	if n, err := r.Read(b[:]); n != 1 || b[0] != 0 {
		c.t.Fatalf("%s did not get ready (%v):\n%s", d.name, err, readAll(out))
	}
	return d
}

// wait waits for amber to end by itself and returns its log and error.
func (d *bgAmber) wait() (string, error) {
	d.t.Helper()
	var err error
	select {
	case err = <-d.done:
		d.done <- err
	case <-time.After(exitTimeout):
		d.t.Fatalf("%s still running after %v", d.name, exitTimeout)
	}
	b, rerr := os.ReadFile(d.log)
	if rerr != nil {
		d.t.Fatal(rerr)
	}
	return string(b), err
}

// mustExit requires that amber ends by itself, successfully (the
// daemon once every page is in), and returns its log.
func (d *bgAmber) mustExit() string {
	d.t.Helper()
	log, err := d.wait()
	if err != nil {
		d.t.Fatalf("%s: %v\n%s", d.name, err, readAll(d.out))
	}
	return log
}

// stop kills amber if it still runs; it may be called again.
func (d *bgAmber) stop() {
	select {
	case err := <-d.done:
		d.done <- err
	default:
		d.cmd.Process.Kill()
		d.done <- <-d.done
	}
	if d.t.Failed() {
		b, _ := os.ReadFile(d.log)
		d.t.Logf("=== %s:\n%s\n%s", d.name, readAll(d.out), b)
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

// TestLazyRestoreDroppable restores droppable_dump lazily: its
// MAP_DROPPABLE mapping, which userfaultfd refuses to register, is
// restored as it is (empty), its private memory lazily (zdtm's maps02
// and maps11 failed on it).
func TestLazyRestoreDroppable(t *testing.T) {
	startCase(t, "droppable_dump").mustRestoreLazily()
}
