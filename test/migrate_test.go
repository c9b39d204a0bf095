package test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// receiver is an amber receive run for a test.
type receiver struct {
	*pageServer // the same life: a command that listens, once
	dir         string
}

// startReceive starts amber receive into the case's dir/name on a free
// loopback port, with env added (AMBER_MIGRATE_FAULT), and waits until it
// listens.
func (c *zcase) startReceive(name string, env ...string) *receiver {
	c.t.Helper()
	dir := filepath.Join(c.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	return startReceiver(c.t, c.dir, dir, nil, env)
}

// startReceiver starts amber receive, run in workDir, into dir on a free
// loopback port, with extra arguments and env added, and waits until it
// listens (--status-fd).
func startReceiver(t *testing.T, workDir, dir string, extra, env []string) *receiver {
	t.Helper()
	port := freePort(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out, err := unlinkedTemp("receive-*.log")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"receive", "-D", dir, "--address", "127.0.0.1", "--port", strconv.Itoa(port),
		"--status-fd", "3", "-v4"}, extra...)
	cmd := exec.Command(testEnv.amber, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = workDir, out, out, []*os.File{w}
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	s := &pageServer{t: t, cmd: cmd, port: port, out: out, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(s.stop)
	var b [1]byte
	if n, err := r.Read(b[:]); n != 1 || b[0] != 0 {
		t.Fatalf("amber receive did not get ready (%v):\n%s", err, readAll(out))
	}
	return &receiver{pageServer: s, dir: dir}
}

// addr is where the receiver listens.
func (r *receiver) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

// exited waits for the receiver's end and returns its error.
func (r *receiver) exited() error {
	r.t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(exitTimeout):
		r.t.Fatalf("amber receive still running:\n%s", readAll(r.out))
	}
	return nil
}

// requireEmpty requires that the receiver left no images behind.
func (r *receiver) requireEmpty() {
	r.t.Helper()
	names, err := os.ReadDir(r.dir)
	if err != nil {
		r.t.Fatal(err)
	}
	if len(names) > 0 {
		var s []string
		for _, n := range names {
			s = append(s, n.Name())
		}
		r.t.Fatalf("%s holds %v after the migration; want it empty", r.dir, s)
	}
}

// migrate runs amber migrate of the program to r with extra options and
// env added, while a reaper takes the source's exit: on one host the
// destination needs its PIDs back.
func (c *zcase) migrate(r *receiver, env []string, extra ...string) amberResult {
	c.t.Helper()
	stop := c.reapWhile()
	defer stop()
	args := append([]string{"migrate", "-t", strconv.Itoa(c.pid), "--to", r.addr(), "-v4"}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), amberTimeout)
	defer cancel()
	cmd, stdout, stderr, err := amberCommand(ctx, testEnv.amber, c.dir, program{}, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	defer stdout.Close()
	defer stderr.Close()
	// A source killed on purpose cannot remove its own images: they are
	// made in the test's directory, which the test removes.
	cmd.Env = append(append(os.Environ(), "TMPDIR="+c.t.TempDir()), env...)
	err = cmd.Run()
	res := amberResult{args: args, stdout: readAll(stdout), stderr: readAll(stderr), err: err}
	c.results = append(c.results, res)
	return res
}

// reapWhile reaps every end of a process with the program's PID (the
// source killed for the handover, a restore killed with its amber) until
// stop is called; it reports how many it reaped.
func (c *zcase) reapWhile() (stop func() int) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	reaped := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var ws unix.WaitStatus
			got, _ := unix.Wait4(c.pid, &ws, unix.WNOHANG|unix.WALL, nil)
			if got == c.pid && (ws.Exited() || ws.Signaled()) {
				reaped++
				continue
			}
			select {
			case <-done:
				return
			case <-time.After(500 * time.Microsecond):
			}
		}
	}()
	return func() int {
		close(done)
		wg.Wait()
		return reaped
	}
}

// requireRuns requires that the program runs and progresses.
func (c *zcase) requireRuns() {
	c.t.Helper()
	if ok, err := progressing(c.pid, 200*time.Millisecond); err != nil || !ok {
		c.t.Fatalf("pid %d does not run after the migration (%v)", c.pid, err)
	}
}

var frozenPages = regexp.MustCompile(`(?m)^frozen: (\d+) pages$`)
var preDumpPages = regexp.MustCompile(`(?m)^pre-dump (\d+): (\d+) pages$`)

// TestMigrate migrates migrate_worker (4 threads rewriting their pages, a
// pipe, a file it appends to) to amber receive over loopback: pre-dumps
// while it runs, then the freeze, the handover and the restore; the
// program checks its memory, pipe and file after. The first pre-dump
// sends all its memory, the freeze only a part; the destination keeps no
// images. Not a pid namespace's init, on one host, the tree is handed
// over killed first, which migrate names with its reason.
func TestMigrate(t *testing.T) {
	c := startCase(t, "migrate_worker")
	time.Sleep(50 * time.Millisecond)
	r := c.startReceive("received")
	res := c.migrate(r, nil)
	if res.err != nil {
		t.Fatalf("migrate: %v\nreceive:\n%s", res, readAll(r.out))
	}
	t.Logf("migrate:\n%s", res.stdout)
	if err := r.exited(); err != nil {
		t.Fatalf("amber receive: %v\n%s", err, readAll(r.out))
	}
	pre := preDumpPages.FindAllStringSubmatch(res.stdout, -1)
	fr := frozenPages.FindStringSubmatch(res.stdout)
	if len(pre) == 0 || fr == nil || !strings.Contains(res.stdout, "downtime: ") {
		t.Fatalf("migrate printed no pre-dumps, frozen pages or downtime:\n%s", res.stdout)
	}
	// One host, a tree that is no pid namespace's init: the handover
	// kills it first, and says why.
	if !strings.Contains(res.stdout, "handover: kill-first (one host, and pid "+strconv.Itoa(c.pid)+" is not the init of a pid namespace") {
		t.Fatalf("migrate did not name the kill-first handover and why:\n%s", res.stdout)
	}
	first, _ := strconv.Atoi(pre[0][2])
	frozen, _ := strconv.Atoi(fr[1])
	if first < 2048 || frozen >= first {
		t.Fatalf("first pre-dump sent %d pages (want the 8 MiB cold region at least), the freeze %d (want fewer)", first, frozen)
	}
	r.requireEmpty()
	c.requireRuns()
	c.mustPass()
}

// TestMigrateNoPreDump migrates with --max-iters 0: everything is sent
// while the tree is frozen, a plain dump and restore over the wire.
func TestMigrateNoPreDump(t *testing.T) {
	c := startCase(t, "migrate_worker")
	r := c.startReceive("received")
	res := c.migrate(r, nil, "--max-iters", "0")
	if res.err != nil {
		t.Fatalf("migrate: %v\nreceive:\n%s", res, readAll(r.out))
	}
	if preDumpPages.MatchString(res.stdout) {
		t.Fatalf("--max-iters 0 pre-dumped:\n%s", res.stdout)
	}
	if err := r.exited(); err != nil {
		t.Fatalf("amber receive: %v\n%s", err, readAll(r.out))
	}
	r.requireEmpty()
	c.mustPass()
}

// exitCode is the exit status of a command's error, -1 if killed or not
// run.
func exitCode(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	return -1
}
