package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	readyTimeout = 2 * time.Minute  // from start to `ready` (1 GiB is written first)
	exitTimeout  = 2 * time.Minute  // from SIGTERM or dump to exit (1 GiB is checked)
	cleanTimeout = 30 * time.Second // for a killed workload to be reaped
)

// env is what every round needs to know.
type env struct {
	amber     string   // the amber binary
	amberArgs []string // extra arguments to every amber dump and restore
	binDir    string   // the compiled workloads and floor
	workDir   string   // where each round gets a directory
	criu      string   // a CRIU binary to compare with ("": none)
}

// tool is a checkpoint/restore program with CRIU's command line: amber,
// or CRIU itself to compare with.
type tool struct {
	name string   // as reported: amber, criu
	bin  string   // its binary
	args []string // extra arguments to each of its commands
	// logsAllIn: its lazy-pages logs "all in after D" at -v3 (amber).
	logsAllIn bool
}

// tools are amber and, if the bench has one, CRIU.
func (e env) tools() []tool {
	ts := []tool{{name: "amber", bin: e.amber, args: e.amberArgs, logsAllIn: true}}
	if e.criu != "" {
		ts = append(ts, tool{name: "criu", bin: e.criu})
	}
	return ts
}

// toolsOfRound are the tools in the order round i (from 1) runs them:
// in turns first, so that neither always finds the machine as the other
// left it.
func (e env) toolsOfRound(i int) []tool {
	ts := e.tools()
	if i%2 == 0 {
		slices.Reverse(ts)
	}
	return ts
}

// command is t's command line for verb with args, its extra
// arguments last.
func (t tool) command(verb string, args ...string) []string {
	return append(append([]string{verb}, args...), t.args...)
}

// round is one measured dump, floor and restore of a workload.
type round struct {
	dump, restore timed
	floor         floorResult
	imageBytes    int64 // all files of the images directory
}

// unsupportedError is amber failing on a workload it may not support yet.
type unsupportedError struct{ line string }

func (e *unsupportedError) Error() string { return "not supported yet: " + e.line }

// runRound runs one round of w in dir: start, dump, floor, restore, verify.
// Whatever fails, no process of the round is left behind.
func runRound(e env, w workload, dir string) (r round, err error) {
	images := filepath.Join(dir, "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		return r, err
	}
	out := filepath.Join(dir, w.name+".out")
	pid, err := startReady(filepath.Join(e.binDir, w.prog), w.args, dir, out, 0)
	if err != nil {
		return r, err
	}
	defer func() {
		if err != nil {
			killGroup(pid, cleanTimeout)
		}
	}()
	amber := e.tools()[0]
	if r.dump, err = dumpRound(amber, w, dir, images, pid); err != nil {
		return r, err
	}
	if r.imageBytes, err = dirSize(images); err != nil {
		return r, err
	}
	if w.floor != floorNone {
		if r.floor, err = runFloor(e.binDir, dir, images, w); err != nil {
			return r, err
		}
	}
	if r.restore, err = restoreRound(amber, w, dir, images, pid); err != nil {
		return r, err
	}
	return r, verify(pid, out)
}

// dumpRound dumps pid with tl, reaps it and its tree (a dump kills
// them), and syncs, so that neither the floor nor the restore competes
// with writeback of the fresh images.
func dumpRound(tl tool, w workload, dir, images string, pid int) (timed, error) {
	t, err := runTimed(dir, "dump", tl.bin, tl.command("dump", "-t", strconv.Itoa(pid), "-D", images)...)
	if err != nil {
		return t, amberFailure(w, err)
	}
	ws, err := waitExit(pid, exitTimeout)
	if err != nil {
		return t, fmt.Errorf("after dump: %w", err)
	}
	if ws.Exited() && ws.ExitStatus() == 0 {
		return t, fmt.Errorf("after dump: pid %d was not killed but exited: %s", pid, describe(ws))
	}
	if err := reapGroup(pid, exitTimeout); err != nil {
		return t, fmt.Errorf("after dump: %w", err)
	}
	unix.Sync()
	return t, nil
}

// restoreRound restores the images detached with tl and checks that
// the workload is back under its old PID, as our child (we are the
// subreaper).
func restoreRound(tl tool, w workload, dir, images string, pid int) (timed, error) {
	t, err := restoreDetached(tl, dir, "restore", images, pid)
	var ce *commandError
	if errors.As(err, &ce) {
		return t, amberFailure(w, err)
	}
	return t, err
}

// restoreDetached runs tl's restore -d of images with extra, its output
// in dir/name.stdout and .stderr, and checks that the workload is back
// under its old PID.
func restoreDetached(tl tool, dir, name, images string, pid int, extra ...string) (timed, error) {
	pidfile := filepath.Join(dir, name+".pid")
	args := append([]string{"-D", images, "-d", "--pidfile", pidfile}, extra...)
	t, err := runTimed(dir, name, tl.bin, tl.command("restore", args...)...)
	if err != nil {
		return t, err
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return t, fmt.Errorf("after restore: %w", err)
	}
	if got, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || got != pid {
		return t, fmt.Errorf("after restore: pidfile says %q, dumped pid was %d", b, pid)
	}
	return t, nil
}

// verify stops the restored workload and requires PASS and exit status 0.
func verify(pid int, out string) error {
	if err := unix.Kill(pid, unix.SIGTERM); err != nil {
		return fmt.Errorf("restored pid %d: SIGTERM: %w", pid, err)
	}
	ws, err := waitExit(pid, exitTimeout)
	if err != nil {
		return fmt.Errorf("restored pid %d: %w", pid, err)
	}
	if err := reapGroup(pid, exitTimeout); err != nil {
		return fmt.Errorf("restored pid %d: %w", pid, err)
	}
	if !hasLine(out, "PASS") || !ws.Exited() || ws.ExitStatus() != 0 {
		return fmt.Errorf("restored workload is broken: %s, want PASS and exit status 0; output: %s",
			describe(ws), tail(out))
	}
	return nil
}

// amberFailure is err from amber on w: "not supported yet" for a workload
// amber may not handle, else a plain error.
func amberFailure(w workload, err error) error {
	if w.maybeUnsupported {
		return &unsupportedError{line: failureLine(err)}
	}
	return err
}

// tail is the end of the file at path, for error messages.
func tail(path string) string {
	const max = 2000
	s := strings.TrimSpace(readString(path))
	if len(s) > max {
		s = "..." + s[len(s)-max:]
	}
	return fmt.Sprintf("%q", s)
}

// isUnsupported returns the error line if err says amber does not
// support a workload yet.
func isUnsupported(err error) (string, bool) {
	var u *unsupportedError
	if errors.As(err, &u) {
		return u.line, true
	}
	return "", false
}
