package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/log"
)

// amberBin is the amber binary TestMain builds.
var amberBin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "amber-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	amberBin = filepath.Join(dir, "amber")
	build := exec.Command("go", "build", "-o", amberBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// result is what one run of the binary did.
type result struct {
	status         int
	stdout, stderr string
}

func amber(t *testing.T, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(amberBin, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run amber %v: %v", args, err)
	}
	return result{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

func TestDumpFailsWithLog(t *testing.T) {
	work := t.TempDir()
	if err := os.Mkdir(filepath.Join(work, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	r := amber(t, work, "dump", "-t", "999999999", "-D", "tmp", "-o", "dump.log", "-v4")
	if r.status == 0 {
		t.Fatalf("dump of a missing PID succeeded: %+v", r)
	}
	if !strings.HasPrefix(r.stderr, "amber: ") {
		t.Errorf("stderr %q lacks the amber: prefix", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(work, "tmp", "dump.log")); err != nil {
		t.Errorf("log file not created in the images directory: %v", err)
	}
}

func TestBadCommandLineStillLogs(t *testing.T) {
	work := t.TempDir()
	r := amber(t, work, "--bogus", "-o", "x.log", "-D", work, "dump", "-t", "1")
	if r.status != 1 || !strings.Contains(r.stderr, "amber: unrecognized option '--bogus'") {
		t.Errorf("got %+v", r)
	}
	b, err := os.ReadFile(filepath.Join(work, "x.log"))
	if err != nil || !strings.Contains(string(b), "unrecognized option") {
		t.Errorf("log file: %q, %v", b, err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"pre-dump"}, {"dump", "--leave-stopped", "-t", "1"}} {
		r := amber(t, t.TempDir(), args...)
		if r.status != 1 || !strings.HasPrefix(r.stderr, "amber: ") {
			t.Errorf("amber %v: %+v", args, r)
		}
	}
}

// TestSwrkNotASocket: swrk on a descriptor that is not a SOCK_SEQPACKET
// socket says so and fails.
func TestSwrkNotASocket(t *testing.T) {
	r := amber(t, t.TempDir(), "swrk", "0")
	if r.status != 1 || !strings.Contains(r.stderr, "descriptor 0: not a socket") {
		t.Errorf("amber swrk 0: %+v", r)
	}
}

func TestVersionAndHelp(t *testing.T) {
	if r := amber(t, t.TempDir(), "--version"); r.status != 0 || r.stdout != "Version: "+version+"\n" {
		t.Errorf("--version: %+v", r)
	}
	if r := amber(t, t.TempDir(), "-h"); r.status != 0 || !strings.Contains(r.stdout, "Usage:") {
		t.Errorf("-h: %+v", r)
	}
}

// TestVerbHelp: `amber VERB --help` (or -h, before or after the verb)
// prints that verb's usage and options, not the others', and exits 0.
func TestVerbHelp(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		has     []string
		hasNot  []string
		usageOf string
	}{
		{[]string{"dump", "--help"}, []string{"--tree", "--leave-running", "--log-file"}, []string{"--pidfile", "--trust-images"}, "dump"},
		{[]string{"restore", "--help"}, []string{"--pidfile", "--trust-images", "--skip-file-check", "--restore-detached"}, []string{"--tree", "--leave-running"}, "restore"},
		{[]string{"-h", "check"}, []string{"--feature"}, []string{"--tree"}, "check"},
		{[]string{"show", "-h"}, []string{"DIR|FILE"}, []string{"--tree"}, "show"},
		{[]string{"bench", "--help"}, []string{"--rounds", "--plot"}, []string{"--tree"}, "bench"},
	} {
		r := amber(t, t.TempDir(), tc.args...)
		if r.status != 0 || !strings.HasPrefix(r.stdout, "Usage: amber "+tc.usageOf+" ") {
			t.Errorf("amber %v: %+v", tc.args, r)
			continue
		}
		for _, s := range tc.has {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("amber %v does not mention %s:\n%s", tc.args, s, r.stdout)
			}
		}
		for _, s := range tc.hasNot {
			if strings.Contains(r.stdout, s) {
				t.Errorf("amber %v mentions %s, an option of another command:\n%s", tc.args, s, r.stdout)
			}
		}
	}
}

func TestCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the machine's answers are known for root only")
	}
	r := amber(t, t.TempDir(), "check")
	if r.status != 0 || !strings.HasSuffix(r.stdout, "Looks good.\n") {
		t.Errorf("check: %+v", r)
	}
	if !strings.Contains(r.stdout, "missing (not needed where uffd_wp_async is present)") {
		t.Errorf("check does not explain soft-dirty:\n%s", r.stdout)
	}
	r = amber(t, t.TempDir(), "check", "--no-default-config", "--no-default-config", "-verbosity=0", "--feature", "autofs")
	if r.status == 0 || !strings.Contains(r.stderr, "autofs") {
		t.Errorf("check --feature autofs: %+v", r)
	}
	for _, f := range []string{"clone3_set_tid", "seccomp_filters", "seccomp_suspend", "userns"} {
		if r = amber(t, t.TempDir(), "check", "--feature", f); r.status != 0 {
			t.Errorf("check --feature %s: %+v", f, r)
		}
	}
	if r = amber(t, t.TempDir(), "check", "--feature", "warp_drive"); r.status != 1 || !strings.Contains(r.stderr, "unknown feature") {
		t.Errorf("check --feature warp_drive: %+v", r)
	}
}

func TestShow(t *testing.T) {
	dir := t.TempDir()
	d, err := image.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	write := func(path image.Path, kind image.Kind, entries ...proto.Message) {
		if err := image.WriteFile(path, kind, entries...); err != nil {
			t.Fatal(err)
		}
	}
	write(d.InventoryPath(), image.Inventory, &inventory.InventoryEntry{ImgVersion: proto.Uint32(2)})
	write(d.PstreePath(), image.Pstree, &pstree.PstreeEntry{Pid: proto.Uint32(7), Ppid: proto.Uint32(0), Pgid: proto.Uint32(7), Sid: proto.Uint32(7)})
	write(d.PagemapPath(7), image.Pagemap, &pagemap.PagemapHead{PagesId: proto.Uint32(1)},
		&pagemap.PagemapEntry{Vaddr: proto.Uint64(0x1000), CompatNrPages: proto.Uint32(1), NrPages: proto.Uint64(1)})
	if err := d.PagesPath(1).WriteFile(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}

	r := amber(t, dir, "show", ".")
	var all map[string]map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &all); r.status != 0 || err != nil {
		t.Fatalf("show DIR: %v %+v", err, r)
	}
	if all["pstree.img"]["magic"] != "PSTREE" || all["pages-1.img"]["size"] != 4096.0 || len(all) != 4 {
		t.Errorf("show DIR: %v", all)
	}

	r = amber(t, dir, "show", d.PstreePath().String())
	var one struct {
		Magic   string
		Entries []map[string]any
	}
	if err := json.Unmarshal([]byte(r.stdout), &one); r.status != 0 || err != nil || one.Entries[0]["pid"] != 7.0 {
		t.Errorf("show FILE: %v %+v", err, r)
	}

	if err := os.Truncate(d.PstreePath().String(), 10); err != nil {
		t.Fatal(err)
	}
	if r = amber(t, dir, "show", d.PstreePath().String()); r.status != 1 || !strings.Contains(r.stderr, d.PstreePath().String()) {
		t.Errorf("show of a truncated image: %+v", r)
	}
}

func TestRestorePidfile(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "taken.pid")
	if err := os.WriteFile(existing, []byte("1"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := amber(t, dir, "restore", "-D", dir, "--pidfile", existing, "-d")
	if r.status != 1 || !strings.Contains(r.stderr, "pidfile") || !strings.Contains(r.stderr, "exists") {
		t.Errorf("restore onto an existing pidfile: %+v", r)
	}
	if b, _ := os.ReadFile(existing); string(b) != "1" {
		t.Errorf("existing pidfile changed to %q", b)
	}

	// An empty images directory cannot be restored: the pidfile amber
	// created must be gone again, the log must be there.
	r = amber(t, dir, "restore", "-D", dir, "--pidfile", "new.pid", "-d", "-o", "restore.log")
	if r.status == 0 {
		t.Fatalf("restore of an empty directory succeeded: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "new.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pidfile of a failed restore left behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "restore.log")); err != nil {
		t.Errorf("restore.log: %v", err)
	}
}

// TestWaitRoot: the exit status of a waited-for tree is its exit code, or
// 128+signal.
func TestWaitRoot(t *testing.T) {
	for script, want := range map[string]int{"exit 0": 0, "exit 7": 7, "kill -TERM $$": 128 + 15} {
		pid, err := syscall.ForkExec("/bin/sh", []string{"sh", "-c", script}, &syscall.ProcAttr{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := waitRoot(pid, log.Discard())
		if err != nil || got != want {
			t.Errorf("%q: status %d, %v; want %d", script, got, err, want)
		}
	}
	if _, err := waitRoot(999999999, log.Discard()); err == nil {
		t.Error("waitRoot of a non-child succeeded")
	}
}

// TestCheckImages checks a directory against its manifest: one that
// matches, one with a damaged image (named), one without a manifest.
func TestCheckImages(t *testing.T) {
	dir := t.TempDir()
	d, err := image.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.PstreePath().WriteFile([]byte("pstree")); err != nil {
		t.Fatal(err)
	}
	if r := amber(t, dir, "check-images"); r.status != 1 || !strings.Contains(r.stderr, image.ManifestName) {
		t.Errorf("check-images without a manifest: %+v", r)
	}
	if err := image.WriteManifest(d, nil); err != nil {
		t.Fatal(err)
	}
	if r := amber(t, dir, "check-images", "-D", dir); r.status != 0 || !strings.Contains(r.stdout, "1 image files match") {
		t.Errorf("check-images: %+v", r)
	}
	if err := d.PstreePath().WriteFile([]byte("pstreE")); err != nil {
		t.Fatal(err)
	}
	if r := amber(t, dir, "check-images"); r.status != 1 || !strings.Contains(r.stderr, "pstree.img: CRC32C") {
		t.Errorf("check-images of a damaged image: %+v", r)
	}
}
