package test

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
)

// TestBadInput feeds amber what it must refuse: each case wants a non-zero
// exit, an error on stderr naming the culprit, and nothing left running.
func TestBadInput(t *testing.T) {
	t.Run("dump_no_such_pid", testDumpNoSuchPid)
	t.Run("restore_empty_dir", testRestoreEmptyDir)
	t.Run("restore_truncated_core", testRestoreTruncatedCore)
	t.Run("restore_bad_pstree_magic", testRestoreBadPstreeMagic)
	t.Run("restore_pid_in_use", testRestorePidInUse)
	t.Run("restore_file_changed", testRestoreFileChanged)
}

func testDumpNoSuchPid(t *testing.T) {
	requireAmber(t)
	pid, err := unusedPid()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := runAmber(testEnv.amber, dir, program{}, "dump", "-t", strconv.Itoa(pid), "-D", dir)
	requireFailureNamingPid(t, r, pid)
}

func testRestoreEmptyDir(t *testing.T) {
	requireAmber(t)
	dir := t.TempDir()
	r := runAmber(testEnv.amber, dir, program{}, "restore", "-D", dir, "-d")
	requireFailure(t, r, "inventory.img")
}

func testRestoreTruncatedCore(t *testing.T) {
	c := startCase(t, "heap_globals")
	c.mustDump()
	core := filepath.Join(c.images, "core-"+strconv.Itoa(c.pid)+".img")
	fi, err := os.Stat(core)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(core, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	c.dropManifest()
	requireFailure(t, c.restoreDetached(c.pidfile()), filepath.Base(core))
	c.requireLive()
}

func testRestoreBadPstreeMagic(t *testing.T) {
	c := startCase(t, "heap_globals")
	c.mustDump()
	pstree := filepath.Join(c.images, "pstree.img")
	b, err := os.ReadFile(pstree)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 8 {
		t.Fatalf("pstree.img has %d bytes; want at least the two magics", len(b))
	}
	copy(b[4:8], []byte{0xef, 0xbe, 0xad, 0xde}) // the image magic, after IMG_COMMON
	if err := os.WriteFile(pstree, b, 0o644); err != nil {
		t.Fatal(err)
	}
	c.dropManifest()
	requireFailure(t, c.restoreDetached(c.pidfile()), "pstree.img")
	c.requireLive()
}

// testRestorePidInUse restores while the dumped original still runs: amber
// must refuse, name the PID, start nothing, and leave the original intact.
func testRestorePidInUse(t *testing.T) {
	c := startCase(t, "heap_globals")
	if r := c.dump("--leave-running"); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	requireFailureNamingPid(t, c.restoreDetached(c.pidfile()), c.pid)
	c.requireLive(c.pid)
	for _, pid := range childrenOf(os.Getpid()) {
		if pid != c.pid && alive(pid) {
			st, _ := readStat(pid)
			t.Fatalf("failed restore left pid %d (%s) running", pid, st.Comm)
		}
	}
	c.mustPass()
}

// testRestoreFileChanged changes, after the dump, one of the files that
// file_offset has open: restore must notice and name it.
func testRestoreFileChanged(t *testing.T) {
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
	// Shrunk: a file open for writing that only grew would be restored
	// with a warning (TestRestoreGrownOutput).
	dropLastByte(t, files[0])
	r := c.restoreDetached(c.pidfile())
	requireFailure(t, r, filepath.Base(files[0]))
	requireFailure(t, r, "--skip-file-check")
	c.requireLive()
}

func dropLastByte(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()-1); err != nil {
		t.Fatal(err)
	}
}
