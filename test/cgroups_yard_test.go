package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// makeCgroupYard mounts a tmpfs at a new directory and, in it, every
// hierarchy of the test's own cgroups, named as CRIU's --cgroup-yard
// wants them (as zdtm's cgroup_yard.hook makes them); everything is
// unmounted when the test ends, whatever its outcome.
func makeCgroupYard(t *testing.T) string {
	t.Helper()
	yard := filepath.Join(t.TempDir(), "yard")
	if err := os.Mkdir(yard, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("amber_yard", yard, "tmpfs", 0, ""); err != nil {
		t.Fatalf("mount tmpfs at %s: %v", yard, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(yard, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount yard %s: %v", yard, err)
		}
	})
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			t.Fatalf("/proc/self/cgroup: bad line %q", line)
		}
		dir, fstype, opts := f[1], "cgroup", f[1]
		switch {
		case f[1] == "":
			dir, fstype, opts = "unified", "cgroup2", ""
		case strings.HasPrefix(f[1], "name="):
			dir, opts = strings.TrimPrefix(f[1], "name="), "none,"+f[1]
		}
		path := filepath.Join(yard, dir)
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("none", path, fstype, 0, opts); err != nil {
			t.Fatalf("mount %s (%s) at %s: %v", fstype, opts, path, err)
		}
		t.Cleanup(func() {
			if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", path, err)
			}
		})
	}
	return yard
}

// TestCgroupsYard dumps and restores cgroup_member with --cgroup-yard:
// the hierarchies mounted there are used. A restore with a yard
// lacking them fails, naming the missing directory, and leaves nothing
// running; with the real yard, the program finds itself back in its
// cgroups, made again.
func TestCgroupsYard(t *testing.T) {
	c, name := startCgroupMember(t)
	yard := makeCgroupYard(t)
	c.mustDump("--cgroup-yard", yard)
	removeCgroups(t, name)

	empty := t.TempDir()
	pidfile := c.pidfile()
	r := c.amber(c.prog, c.restoreArgs(pidfile, "-d", "--cgroup-yard", empty)...)
	if r.err == nil {
		t.Fatalf("restore with the empty yard %s succeeded", empty)
	}
	log, _ := os.ReadFile(filepath.Join(c.images, "restore.log"))
	if want := "cgroup yard: " + empty + "/"; !strings.Contains(string(log)+r.stderr, want) {
		t.Errorf("restore's error does not name the yard's missing directory (%q):\n%s%s", want, log, r.stderr)
	}
	if alive(c.pid) {
		t.Fatalf("pid %d runs after a failed restore", c.pid)
	}
	for _, h := range cgroupMemberHierarchies {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", h, name)); err == nil {
			t.Errorf("cgroup %s of %s left behind by the failed restore", name, h)
		}
	}

	pidfile = c.pidfile()
	if r := c.amber(c.prog, c.restoreArgs(pidfile, "-d", "--cgroup-yard", yard)...); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	c.checkRestoredPid(pidfile)
	c.mustPass()
}
