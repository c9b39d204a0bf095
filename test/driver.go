// Package test is amber's end-to-end test driver, in the style of CRIU's
// zdtm: each program under zdtm/static sets up some state, says `ready`,
// is dumped and restored by amber, and on SIGTERM checks its state and says
// `PASS` or `FAIL: reason`.
//
// This file holds the plumbing: starting a program, waiting for it, and
// running amber on it. The tests themselves are in the _test.go files.
// The end-to-end tests need root; TestMain makes the test process a child
// subreaper so that dumped and detached-restored programs stay its
// children and can be reaped.
package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// program is one zdtm test program and how to build and run it.
type program struct {
	name     string
	cflags   []string // extra gcc flags
	nofile   uint64   // RLIMIT_NOFILE to run and restore it under; 0: inherited
	cpuFlags []string // /proc/cpuinfo flags the program needs
	// hugePages is how many free huge pages of the default size the
	// program needs; the harness raises vm.nr_hugepages to have them.
	hugePages int
	// dumpFlags and restoreFlags are extra arguments of amber dump and
	// amber restore for it (--tcp-established).
	dumpFlags, restoreFlags []string
	// refused, if set, says amber cannot dump the program yet: the dump
	// must fail with an error containing it, and the program run on.
	refused string
	// own: a test of its own drives the program (TestZdtm skips it).
	own bool
	// under is a command line the program runs under (setpriv ...),
	// which amber does not.
	under []string
	// cloneflags are the namespaces (CLONE_NEW*) the program starts in.
	cloneflags uintptr
	// userns starts it as uid and gid 0 of a user namespace of its own
	// (besides cloneflags'), whose ids 0 to 65535 are usernsBase and on
	// outside, as a rootless container's: its scratch directory and out
	// file are that uid's.
	userns bool
	// work starts a userns program in dir/work, a directory of its own
	// owned by its user namespace's root, where it may make files (the
	// scratch directory stays root's).
	work bool
	// usernsIDs is how many ids its user namespace maps (0: 65536).
	usernsIDs uint32
	// setup, if set, prepares dir/work (work) before the program starts.
	setup func(work string) error
	// keepSession leaves the program in the driver's session instead
	// of a session of its own.
	keepSession bool
}

// command is the argv that runs argv under p's limits.
func (p program) command(argv ...string) []string {
	if p.nofile == 0 {
		return argv
	}
	n := strconv.FormatUint(p.nofile, 10)
	return append([]string{"/usr/bin/prlimit", "--nofile=" + n + ":" + n, "--"}, argv...)
}

// task is one run of a test program in its own scratch directory.
type task struct {
	prog   program
	dir    string // scratch dir: the program's cwd; holds its out file
	out    string // the program's stdout and stderr
	images string // images dir for amber
	pid    int    // the program's PID, before dump and after restore
}

// startTask starts binDir/NAME in dir, in a session of its own as a daemon
// would be, with stdin /dev/null and stdout and stderr appending to
// dir/NAME.out, and extra as its descriptors 3 and up. The program is a
// child of this process.
func startTask(p program, binDir, dir string, extra ...*os.File) (*task, error) {
	tk := &task{prog: p, dir: dir, out: filepath.Join(dir, p.name+".out"), images: filepath.Join(dir, "images")}
	if err := os.Mkdir(tk.images, 0o755); err != nil {
		return nil, err
	}
	exe := filepath.Join(dir, p.name)
	if err := copyFile(filepath.Join(binDir, p.name), exe); err != nil {
		return nil, err
	}
	out, err := os.OpenFile(tk.out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cwd, arg0 := dir, "./"+p.name
	if p.work {
		cwd, arg0 = filepath.Join(dir, "work"), exe
		if err := os.Mkdir(cwd, 0o755); err != nil {
			return nil, err
		}
		if err := os.Chown(cwd, usernsBase, usernsBase); err != nil {
			return nil, err
		}
		if p.setup != nil {
			if err := p.setup(cwd); err != nil {
				return nil, err
			}
		}
	}
	argv := p.command(append(slices.Clone(p.under), arg0)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = cwd, out, out, extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: !p.keepSession, Setpgid: p.keepSession, Cloneflags: p.cloneflags}
	if p.userns {
		if err := inUserNamespace(cmd.SysProcAttr, dir, tk.out, p.usernsIDs); err != nil {
			return nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	tk.pid = cmd.Process.Pid
	// The driver reaps with wait4 itself; drop os/exec's handle on it.
	cmd.Process.Release()
	return tk, nil
}

// usernsBase is the first id outside of a program's user namespace
// (program.userns): its uid and gid 0.
const usernsBase = 100000

// inUserNamespace makes attr start the program as uid and gid 0 of a
// new user namespace mapping ids ids (0: 65536), from 0, to usernsBase
// on, and gives that uid its out file and dir/root, where it builds its
// root: dir stays root's, as amber wants the images' directories.
func inUserNamespace(attr *syscall.SysProcAttr, dir, out string, ids uint32) error {
	size := 65536
	if ids > 0 {
		size = int(ids)
	}
	attr.Cloneflags |= syscall.CLONE_NEWUSER
	attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: usernsBase, Size: size}}
	attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: usernsBase, Size: size}}
	attr.GidMappingsEnableSetgroups = true
	attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	for _, p := range []string{root, out} {
		if err := os.Chown(p, usernsBase, usernsBase); err != nil {
			return err
		}
	}
	// It must reach its directory.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// copyFile copies an executable, so each task runs its own file in its
// scratch dir and a test that changes files touches only its own.
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// output returns what the program wrote so far.
func (tk *task) output() string {
	b, _ := os.ReadFile(tk.out)
	return string(b)
}

// hasLine says whether the out file has a line that is exactly line.
func (tk *task) hasLine(line string) bool {
	for _, l := range strings.Split(tk.output(), "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// waitReady waits for the `ready` line. It fails early if the program dies.
func (tk *task) waitReady(timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); ; {
		if tk.hasLine("ready") {
			return nil
		}
		if !alive(tk.pid) {
			return fmt.Errorf("%s (pid %d) exited before it was ready", tk.prog.name, tk.pid)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) not ready after %v", tk.prog.name, tk.pid, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// amberTimeout bounds one amber command.
const amberTimeout = 2 * time.Minute

// amberResult is what one amber command did.
type amberResult struct {
	args   []string
	stdout string
	stderr string
	err    error // nil on exit status 0
}

func (r amberResult) String() string {
	return fmt.Sprintf("amber %s: %v\nstderr:\n%s", strings.Join(r.args, " "), r.err, r.stderr)
}

// runAmber runs amber in dir with args, under p's limits, and waits for it.
// Its stdout and stderr go through files, not pipes, so that a process it
// leaves running cannot hold the driver up by keeping a pipe open.
func runAmber(bin, dir string, p program, args ...string) amberResult {
	ctx, cancel := context.WithTimeout(context.Background(), amberTimeout)
	defer cancel()
	cmd, stdout, stderr, err := amberCommand(ctx, bin, dir, p, args...)
	if err != nil {
		return amberResult{args: args, err: err}
	}
	defer stdout.Close()
	defer stderr.Close()
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", amberTimeout, err)
	}
	return amberResult{args: args, stdout: readAll(stdout), stderr: readAll(stderr), err: err}
}

// amberCommand prepares amber with args, run in dir, its stdout and
// stderr going to fresh unlinked temporary files outside dir: the program
// under test may watch its directory (inotify), and amber refuses to dump
// events it cannot save.
func amberCommand(ctx context.Context, bin, dir string, p program, args ...string) (*exec.Cmd, *os.File, *os.File, error) {
	stdout, err := unlinkedTemp("amber-*.stdout")
	if err != nil {
		return nil, nil, nil, err
	}
	stderr, err := unlinkedTemp("amber-*.stderr")
	if err != nil {
		stdout.Close()
		return nil, nil, nil, err
	}
	argv := p.command(append([]string{bin}, args...)...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, stdout, stderr
	return cmd, stdout, stderr, nil
}

// unlinkedTemp creates a temporary file and unlinks it: it lives as long
// as it is open.
func unlinkedTemp(pattern string) (*os.File, error) {
	f, err := os.CreateTemp("", pattern)
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}

func readAll(f *os.File) string {
	var b bytes.Buffer
	if _, err := f.Seek(0, 0); err == nil {
		b.ReadFrom(f)
	}
	return b.String()
}

// dumpArgs are the arguments of `amber dump` for tk, plus extra.
func (tk *task) dumpArgs(extra ...string) []string {
	return append([]string{"dump", "-t", strconv.Itoa(tk.pid), "-D", tk.images, "-v4", "-o", "dump.log"}, extra...)
}

// restoreArgs are the arguments of `amber restore` for tk writing the
// restored PID to pidfile, plus extra.
func (tk *task) restoreArgs(pidfile string, extra ...string) []string {
	return append([]string{"restore", "-D", tk.images, "--pidfile", pidfile, "-v4", "-o", "restore.log"}, extra...)
}

// readPidfile reads a PID written by amber restore --pidfile.
func readPidfile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pidfile %s: bad contents %q", path, b)
	}
	return pid, nil
}

// cpuHas says whether every CPU flag in flags is in /proc/cpuinfo.
func cpuHas(flags []string) bool {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			for _, f := range strings.Fields(v) {
				have[f] = true
			}
			break
		}
	}
	for _, f := range flags {
		if !have[f] {
			return false
		}
	}
	return true
}
