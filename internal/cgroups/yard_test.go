package cgroups

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestYardDir: the yard's directories are named as CRIU names them.
func TestYardDir(t *testing.T) {
	for name, want := range map[string]string{
		"cpu,cpuacct":      "cpu,cpuacct",
		"memory":           "memory",
		"name=systemd":     "systemd",
		"":                 "unified",
		"name=zdtmtst":     "zdtmtst",
		"net_cls,net_prio": "net_cls,net_prio",
	} {
		if got := yardDir(name); got != want {
			t.Errorf("yardDir(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestYardRefused: a missing entry, a symbolic link and a directory
// that is not a cgroup mount are refused, naming the path and the
// hierarchy.
func TestYardRefused(t *testing.T) {
	yard := t.TempDir()
	if err := os.Mkdir(yard+"/memory", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/sys/fs/cgroup/unified", yard+"/unified"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"cpu,cpuacct": yard + "/cpu,cpuacct for hierarchy cpu,cpuacct",
		"memory":      yard + "/memory is not hierarchy memory: not a cgroup v1 file system",
		"":            yard + "/unified for hierarchy unified (v2)",
	} {
		fd, err := openYard(yard, name)
		if err == nil {
			t.Errorf("%q: accepted (fd %d)", name, fd)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q in it", name, err, want)
		}
	}
}

// TestYardWrongHierarchy: a cgroup mount of another hierarchy, or of
// the other version, is refused; the right one is taken.
func TestYardWrongHierarchy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting cgroup file systems needs root")
	}
	yard := t.TempDir()
	mount := func(dir, fstype, opts string) {
		t.Helper()
		if err := os.Mkdir(yard+"/"+dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("none", yard+"/"+dir, fstype, 0, opts); err != nil {
			t.Skipf("mount %s %s: %v", fstype, opts, err)
		}
		t.Cleanup(func() { unix.Unmount(yard+"/"+dir, unix.MNT_DETACH) })
	}
	mount("systemd", "cgroup2", "")
	mount("unified", "cgroup2", "")
	mount("freezer", "cgroup", "none,name=systemd")
	for name, want := range map[string]string{
		"name=systemd": "not a cgroup v1 file system",
		"freezer":      "lack freezer",
	} {
		if fd, err := openYard(yard, name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v (fd %d), want %q", name, err, fd, want)
		}
	}
	fd, err := openYard(yard, "")
	if err != nil {
		t.Fatalf("v2: %v", err)
	}
	unix.Close(fd)
}
