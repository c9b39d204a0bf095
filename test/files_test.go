package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFilesRefused feeds dump and restore files they must refuse, with an
// error naming the culprit, leaving the program running or restorable.
func TestFilesRefused(t *testing.T) {
	t.Run("dump_unix_socket_outside_tree", testDumpExternalUnixSocket)
	t.Run("dump_ghost_above_limit", testDumpGhostAboveLimit)
	t.Run("restore_file_touched", testRestoreFileTouched)
}

// testDumpExternalUnixSocket dumps a program holding, on fd 3, one end of
// a socketpair whose other end this test keeps: like criu without
// --ext-unix-sk, amber must refuse, naming the pid, the fd and the peer,
// and the program must go on running as before.
func testDumpExternalUnixSocket(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "test end"), os.NewFile(uintptr(fds[1]), "program end")
	defer mine.Close()
	c := startCaseWithFiles(t, "pause", theirs)
	theirs.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fds[0], &st); err != nil {
		t.Fatal(err)
	}
	r := c.dump()
	t.Logf("refused: %s", r.stderr)
	requireFailureNamingPid(t, r, c.pid)
	for _, want := range []string{"fd 3", "outside the dumped tree", fmt.Sprint(st.Ino), "--ext-unix-sk"} {
		requireFailure(t, r, want)
	}
	if st, err := readStat(c.pid); err != nil || st.State == 't' || st.State == 'T' || st.State == 'Z' {
		t.Fatalf("pid %d not running as before after a refused dump (%v)", c.pid, err)
	}
	c.mustPass()
}

// startCaseWithFiles is startCase for a program that also gets extra as
// its descriptors 3, 4, ...
func startCaseWithFiles(t *testing.T, name string, extra ...*os.File) *zcase {
	t.Helper()
	requireAmber(t)
	p, ok := lookupProgram(name)
	if !ok {
		t.Fatalf("no program %q in the table", name)
	}
	if err := testEnv.compileErrs[name]; err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tk := &task{prog: p, dir: dir, out: filepath.Join(dir, p.name+".out"), images: filepath.Join(dir, "images")}
	if err := os.Mkdir(tk.images, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, p.name)
	if err := copyFile(filepath.Join(testEnv.binDir, p.name), exe); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(tk.out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command("./" + p.name)
	cmd.Dir, cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = dir, out, out, extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tk.pid = cmd.Process.Pid
	cmd.Process.Release()
	c := &zcase{t: t, task: tk}
	t.Cleanup(c.cleanup)
	if err := tk.waitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	return c
}

// testDumpGhostAboveLimit dumps unlink_fstat00, whose sparse unlinked
// file takes two 4 KiB blocks, with --ghost-limit 4K: the dump must fail
// naming the file and the option, and the program must still pass.
func testDumpGhostAboveLimit(t *testing.T) {
	c := startCase(t, "unlink_fstat00")
	r := c.dump("--ghost-limit", "4K")
	t.Logf("refused: %s", r.stderr)
	requireFailure(t, r, "unlink_fstat00.sparse")
	requireFailure(t, r, "--ghost-limit")
	c.mustPass()
}

// testRestoreFileTouched changes only the modification time of a file
// file_offset has open, after the dump: restore must refuse naming it,
// then restore it anyway with --skip-file-check.
func testRestoreFileTouched(t *testing.T) {
	c := startCase(t, "file_offset")
	dir, err := filepath.EvalSymlinks(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	open, err := openFilesUnder(c.pid, dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, f := range open {
		if filepath.Base(f) != filepath.Base(c.out) {
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		t.Fatalf("%s has no file open in %s besides its output", c.prog.name, dir)
	}
	sort.Strings(files)
	c.mustDump()
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(files[0], later, later); err != nil {
		t.Fatal(err)
	}
	r := c.restoreDetached(c.pidfile())
	t.Logf("refused: %s", r.stderr)
	requireFailure(t, r, filepath.Base(files[0]))
	requireFailure(t, r, "modified")
	c.requireLive()
	pidfile := c.pidfile()
	if r := c.amber(c.prog, c.restoreArgs(pidfile, "-d", "--skip-file-check")...); r.err != nil {
		t.Fatalf("restore --skip-file-check failed: %v", r)
	}
	c.checkRestoredPid(pidfile)
	c.mustPass()
}
