package test

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"golang.org/x/sys/unix"

	"amber/internal/image"
)

const (
	readyTimeout = 10 * time.Second // from start to `ready`
	exitTimeout  = 10 * time.Second // from SIGTERM (or dump) to exit
)

// testEnv is what TestMain prepared for the end-to-end tests.
var testEnv struct {
	skip        string // why the end-to-end tests cannot run here, if so
	amber       string // the amber binary
	binDir      string // the compiled test programs
	buildErr    error
	compileErrs map[string]error
}

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

// testMain makes this process a child subreaper, keeps its inherited
// descriptors from its children, builds amber and compiles the test
// programs into a temporary directory, then runs the tests.
func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		testEnv.skip = "end-to-end tests need root: run `make test` as root"
		fmt.Fprintln(os.Stderr, "test: skipping end-to-end tests: not root")
		return m.Run()
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "test: PR_SET_CHILD_SUBREAPER: %v\n", err)
		return 1
	}
	// Descriptors this process inherited beyond 0-2 would leak into the
	// programs and be dumped with them: the programs get stdin, stdout and
	// stderr only.
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		fmt.Fprintf(os.Stderr, "test: close_range: %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "amber-test-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "test: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	testEnv.amber, testEnv.binDir = filepath.Join(dir, "amber"), dir
	testEnv.buildErr = buildAmber("..", testEnv.amber)
	testEnv.compileErrs = compilePrograms("zdtm", dir, programs)
	return m.Run()
}

// requireAmber skips t when not root and fails it when amber did not build.
func requireAmber(t *testing.T) {
	t.Helper()
	if testEnv.skip != "" {
		missing(t, testEnv.skip)
	}
	if testEnv.buildErr != nil {
		t.Fatalf("building amber: %v", testEnv.buildErr)
	}
}

// zcase is one end-to-end run of one test program.
type zcase struct {
	t *testing.T
	*task
	results []amberResult // the amber commands run, for the failure report
}

// startCase starts the named program in a fresh scratch directory and waits
// until it is ready. On failure the cleanup reports the program's output
// and amber's logs; it always kills and reaps whatever is left.
func startCase(t *testing.T, name string) *zcase {
	t.Helper()
	requireAmber(t)
	p, ok := lookupProgram(name)
	if !ok {
		t.Fatalf("no program %q in the table", name)
	}
	return startProgram(t, p)
}

// startProgram is startCase for a program of the table run differently
// (under another command), extra its descriptors 3 and up.
func startProgram(t *testing.T, p program, extra ...*os.File) *zcase {
	t.Helper()
	requireAmber(t)
	name := p.name
	if !cpuHas(p.cpuFlags) {
		t.Skipf("%s needs CPU flags %v", name, p.cpuFlags)
	}
	if err := testEnv.compileErrs[name]; err != nil {
		t.Fatal(err)
	}
	if p.hugePages > 0 {
		needHugePages(t, p.hugePages)
	}
	dir := t.TempDir()
	if len(p.under) > 0 {
		// It may run as another user: it must reach its executable.
		for _, d := range []string{dir, filepath.Dir(dir)} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	tk, err := startTask(p, testEnv.binDir, dir, extra...)
	if err != nil {
		t.Fatal(err)
	}
	c := &zcase{t: t, task: tk}
	t.Cleanup(c.cleanup)
	if err := tk.waitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	return c
}

func lookupProgram(name string) (program, bool) {
	for _, p := range programs {
		if p.name == name {
			return p, true
		}
	}
	return program{}, false
}

func (c *zcase) cleanup() {
	if c.t.Failed() {
		c.report()
	}
	killChildren(c.t)
}

// report logs the program's output, amber's logs and amber's stderr.
func (c *zcase) report() {
	c.t.Logf("=== %s:\n%s", c.out, c.output())
	for _, name := range []string{"dump.log", "restore.log"} {
		for _, dir := range []string{c.images, c.dir} {
			path := filepath.Join(dir, name)
			if b, err := os.ReadFile(path); err == nil {
				c.t.Logf("=== %s:\n%s", path, b)
			}
		}
	}
	for _, r := range c.results {
		c.t.Logf("=== %v", r)
	}
}

// killChildren kills and reaps every child of the test process: whatever a
// failed test left, and the orphans adopted as subreaper. Killing one may
// orphan its children to us, so it goes on until none is left.
func killChildren(t *testing.T) {
	for round := 0; round < 10; round++ {
		pids := childrenOf(os.Getpid())
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			if err := killAndReap(pid); err != nil {
				t.Logf("cleanup: %v", err)
			}
		}
	}
}

// amber runs amber in the scratch dir, under limits' limits if any.
func (c *zcase) amber(limits program, args ...string) amberResult {
	r := runAmber(testEnv.amber, c.dir, limits, args...)
	c.results = append(c.results, r)
	return r
}

// dump runs amber dump on the program; the caller checks the result.
func (c *zcase) dump(extra ...string) amberResult {
	return c.amber(program{}, c.dumpArgs(extra...)...)
}

// mustDump dumps the program, with extra options, which amber then
// kills, and reaps it.
func (c *zcase) mustDump(extra ...string) {
	c.t.Helper()
	tree := descendants(c.pid)
	if r := c.dump(append(c.prog.dumpFlags[:len(c.prog.dumpFlags):len(c.prog.dumpFlags)], extra...)...); r.err != nil {
		c.t.Fatalf("dump failed: %v", r)
	}
	c.reapDumped(append(tree, c.dumpedPids()...))
}

// dumpedPids are the PIDs of the tree the dump wrote, but the root: a
// tree that forks while it is dumped has some that descendants did not
// see.
func (c *zcase) dumpedPids() []int {
	c.t.Helper()
	dir, err := image.OpenDir(c.images)
	if err != nil {
		c.t.Fatal(err)
	}
	defer dir.Close()
	entries, err := image.ReadFile(dir.PstreePath(), image.Pstree, func() *pstree.PstreeEntry { return &pstree.PstreeEntry{} })
	if err != nil {
		c.t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		if int(e.GetPid()) != c.pid {
			pids = append(pids, int(e.GetPid()))
		}
	}
	return pids
}

// reapDumped waits for the dumped program, which the dump killed, and
// reaps it and tree, its descendants before the dump.
func (c *zcase) reapDumped(tree []int) {
	c.t.Helper()
	ws, err := waitPid(c.pid, exitTimeout)
	if err != nil {
		c.t.Fatalf("after dump: %v", err)
	}
	c.t.Logf("original pid %d gone after dump: %s", c.pid, describeStatus(ws))
	// The killed descendants come to this subreaper: reap them, or their
	// zombies keep the PIDs the restore needs.
	for _, pid := range tree {
		if err := reapOrphan(pid, exitTimeout); err != nil {
			c.t.Fatalf("after dump: %v", err)
		}
	}
}

// pidfile is a fresh path for restore --pidfile (amber, like CRIU, may
// refuse to overwrite one).
func (c *zcase) pidfile() string {
	path := filepath.Join(c.dir, "pid")
	os.Remove(path)
	return path
}

// restoreDetached runs amber restore -d under the program's limits (the
// restored process inherits them); the caller checks the result.
func (c *zcase) restoreDetached(pidfile string) amberResult {
	return c.amber(c.prog, c.restoreArgs(pidfile, append([]string{"-d"}, c.prog.restoreFlags...)...)...)
}

// mustRestoreDetached restores with -d and checks that the program runs
// again under its old PID.
func (c *zcase) mustRestoreDetached() {
	c.t.Helper()
	pidfile := c.pidfile()
	if r := c.restoreDetached(pidfile); r.err != nil {
		c.t.Fatalf("restore failed: %v", r)
	}
	c.checkRestoredPid(pidfile)
}

func (c *zcase) checkRestoredPid(pidfile string) {
	c.t.Helper()
	pid, err := readPidfile(pidfile)
	if err != nil {
		c.t.Fatal(err)
	}
	if pid != c.pid {
		c.t.Fatalf("restored as pid %d, dumped as pid %d", pid, c.pid)
	}
	if !alive(pid) {
		c.t.Fatalf("restored pid %d is not running", pid)
	}
}

// mustPass sends SIGTERM to the program, waits for it (our child, or our
// orphan as subreaper) and requires PASS and exit status 0.
func (c *zcase) mustPass() {
	c.t.Helper()
	if err := unix.Kill(c.pid, unix.SIGTERM); err != nil {
		c.t.Fatalf("SIGTERM pid %d: %v", c.pid, err)
	}
	ws, err := waitPid(c.pid, exitTimeout)
	if err != nil {
		where := describeStuck(c.pid)
		killAndReap(c.pid)
		c.t.Fatalf("after SIGTERM: %v; it wrote:\n%s\nwhere it was:\n%s", err, c.output(), where)
	}
	if !c.hasLine("PASS") || !ws.Exited() || ws.ExitStatus() != 0 {
		c.t.Fatalf("%s: %s; want PASS and exit status 0; it wrote:\n%s", c.prog.name, describeStatus(ws), c.output())
	}
}

// requireFailure requires that amber exited non-zero (not by timeout or
// signal) and that its stderr names want.
func requireFailure(t *testing.T, r amberResult, want string) {
	t.Helper()
	var exit *exec.ExitError
	switch {
	case r.err == nil:
		t.Fatalf("amber %s succeeded; want an error naming %q", strings.Join(r.args, " "), want)
	case !errors.As(r.err, &exit) || exit.ExitCode() <= 0:
		t.Fatalf("want a non-zero exit; got %v", r)
	case !strings.Contains(r.stderr, want):
		t.Fatalf("stderr does not name %q; got %v", want, r)
	}
}

// requireFailureNamingPid is requireFailure for a PID, matched as a word.
func requireFailureNamingPid(t *testing.T, r amberResult, pid int) {
	t.Helper()
	requireFailure(t, r, "")
	if !regexp.MustCompile(fmt.Sprintf(`\b%d\b`, pid)).MatchString(r.stderr) {
		t.Fatalf("stderr does not name pid %d; got %v", pid, r)
	}
}

// requireLive requires that the live processes named like the program are
// exactly want (none, or the original).
func (c *zcase) requireLive(want ...int) {
	c.t.Helper()
	comm := c.prog.name
	if len(comm) > 15 {
		comm = comm[:15]
	}
	got := pidsByComm(comm)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		c.t.Fatalf("processes named %s: %v; want %v", comm, got, want)
	}
}
