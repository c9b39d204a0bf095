package proc

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFdsSelf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "open me")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fds, err := Fds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(fds) || !slices.Contains(fds, int(f.Fd())) || !slices.Contains(fds, 0) {
		t.Errorf("Fds = %v, want sorted and holding 0 and %d", fds, f.Fd())
	}
	if got, err := FdPath(os.Getpid(), int(f.Fd())); err != nil || got != path {
		t.Errorf("FdPath = %q, %v; want %q", got, err, path)
	}
}

func TestThreadsSelf(t *testing.T) {
	tids, err := Threads(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(tids) || !slices.Contains(tids, os.Getpid()) {
		t.Errorf("Threads = %v, want sorted and holding the main thread %d", tids, os.Getpid())
	}
}

// TestChildrenSelf starts a child from whatever thread the Go runtime
// forks on, so it also checks that every thread's list is read.
func TestChildrenSelf(t *testing.T) {
	if _, err := os.Stat(taskPath(os.Getpid(), os.Getpid(), "children")); err != nil {
		t.Skipf("kernel without CONFIG_PROC_CHILDREN: %v", err)
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip(err)
	}
	cmd := exec.Command(sleep, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	kids, err := Children(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(kids) || !slices.Contains(kids, cmd.Process.Pid) {
		t.Errorf("Children = %v, want sorted and holding %d", kids, cmd.Process.Pid)
	}
}

func TestListingsNoProcess(t *testing.T) {
	_, err1 := Fds(noSuchPid)
	_, err2 := Threads(noSuchPid)
	_, err3 := Children(noSuchPid)
	_, err4 := FdPath(noSuchPid, 0)
	for _, err := range []error{err1, err2, err3, err4} {
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/proc/1073741824/") {
			t.Errorf("got %v, want fs.ErrNotExist naming the path", err)
		}
	}
}

func TestParseInts(t *testing.T) {
	got, err := parseInts("12 7 300 ")
	if err != nil || !slices.Equal(got, []int{12, 7, 300}) {
		t.Errorf("parseInts = %v, %v", got, err)
	}
	if _, err := parseInts("12 x"); err == nil {
		t.Error("parseInts(\"12 x\"): no error")
	}
}

func FuzzParseInts(f *testing.F) {
	f.Add("12 7 300 ")
	f.Fuzz(func(t *testing.T, s string) {
		parseInts(s)
	})
}
