package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupMemberHierarchies are the v1 hierarchies cgroup_member makes
// its cgroups in.
var cgroupMemberHierarchies = []string{"cpu", "pids", "freezer", "memory", "devices"}

// startCgroupMember starts cgroup_member, in cgroups of its own named
// after its PID, which the test removes when it ends (once its
// processes are gone); it returns the case and that name.
func startCgroupMember(t *testing.T) (*zcase, string) {
	if _, err := os.Stat("/sys/fs/cgroup/freezer/cgroup.procs"); err != nil {
		missing(t, "cgroup v1 hierarchies at /sys/fs/cgroup/<controller>")
	}
	p, _ := lookupProgram("cgroup_member")
	c := startProgram(t, p)
	name := fmt.Sprintf("amber-cg-%d", c.pid)
	t.Cleanup(func() {
		killChildren(t)
		removeCgroups(t, name)
	})
	return c, name
}

// removeCgroups removes the cgroup root (and root/sub) from each
// hierarchy cgroup_member uses; one missing is fine.
func removeCgroups(t *testing.T, root string) {
	t.Helper()
	for _, h := range cgroupMemberHierarchies {
		for _, d := range []string{filepath.Join(h, root, "sub"), filepath.Join(h, root)} {
			removeCgroup(t, filepath.Join("/sys/fs/cgroup", d))
		}
	}
}

// removeCgroup removes the cgroup at path, which may be missing.
func removeCgroup(t *testing.T, path string) {
	t.Helper()
	var err error
	for i := 0; i < 100; i++ {
		if err = unix.Rmdir(path); err != unix.EBUSY {
			break
		}
		time.Sleep(10 * time.Millisecond) // killed tasks still leaving
	}
	if err != nil && err != unix.ENOENT {
		t.Errorf("remove cgroup %s: %v", path, err)
	}
}

// TestCgroupsRestored dumps cgroup_member, freezing it with its freezer
// cgroup, removes its cgroups and restores it: the restore must make
// them again with their properties and put the parent and its child
// back in them. crit must decode cgroup.img.
func TestCgroupsRestored(t *testing.T) {
	c, name := startCgroupMember(t)
	c.mustDump("--freeze-cgroup", "/sys/fs/cgroup/freezer/"+name)
	log, err := os.ReadFile(filepath.Join(c.images, "dump.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "frozen in") {
		t.Errorf("dump.log does not say the cgroup was frozen")
	}
	critDecodes(t, filepath.Join(c.images, "cgroup.img"))
	removeCgroups(t, name)
	c.mustRestoreDetached()
	c.mustPass()
}

// TestCgroupsRoot restores cgroup_member with --cgroup-root: its
// cgroups must be made under the new root, where it then finds itself.
func TestCgroupsRoot(t *testing.T) {
	c, name := startCgroupMember(t)
	root := fmt.Sprintf("/amber-cgroot-%d", c.pid)
	t.Cleanup(func() { killChildren(t); removeCgroups(t, root) })
	c.mustDump()
	removeCgroups(t, name)
	if err := os.WriteFile(filepath.Join(c.dir, "cgroot"), []byte(root), 0o644); err != nil {
		t.Fatal(err)
	}
	pidfile := c.pidfile()
	if r := c.amber(c.prog, c.restoreArgs(pidfile, "-d", "--cgroup-root", root)...); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	c.checkRestoredPid(pidfile)
	for _, h := range cgroupMemberHierarchies {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", h, name)); err == nil {
			t.Errorf("cgroup %s of %s made, want it under %s only", name, h, root)
		}
	}
	c.mustPass()
}

// critDecodes requires crit to decode the image at path.
func critDecodes(t *testing.T, path string) {
	t.Helper()
	crit := critCommand(t)
	args := append(crit[1:len(crit):len(crit)], "decode", "-i", path)
	if out, err := exec.Command(crit[0], args...).CombinedOutput(); err != nil {
		t.Errorf("crit decode -i %s: %v\n%s", path, err, out)
	}
}

// TestCgroupThreads dumps cgroup_threads, one of whose threads is in a
// cgroup of its own in cpu's v1 hierarchy and in a threaded cgroup of
// the unified one, removes the cgroups and restores it: each thread
// must be back in its own cgroups (the thread cores' cg_set), the
// threaded one threaded again.
func TestCgroupThreads(t *testing.T) {
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cgroup.procs"); err != nil {
		missing(t, "cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu")
	}
	p, _ := lookupProgram("cgroup_threads")
	c := startProgram(t, p)
	name := fmt.Sprintf("amber-cgt-%d", c.pid)
	dirs := []string{"cpu/" + name + "/sub", "cpu/" + name, "unified/" + name + "/thr", "unified/" + name}
	remove := func() {
		for _, d := range dirs {
			removeCgroup(t, filepath.Join("/sys/fs/cgroup", d))
		}
	}
	t.Cleanup(func() {
		killChildren(t)
		remove()
	})
	c.mustDump()
	critDecodes(t, filepath.Join(c.images, "cgroup.img"))
	remove()
	c.mustRestoreDetached()
	c.mustPass()
}

// TestCgroupNamespace dumps cgroup_ns, whose root is in a cgroup
// namespace of its own rooted at amber-cgns-PID and lives in
// amber-cgns-PID/inner, removes its cgroups and restores it: the
// restore must make the namespace again at the same root, so that the
// process sees "/inner" and its child "/".
func TestCgroupNamespace(t *testing.T) {
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cgroup.procs"); err != nil {
		missing(t, "cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu")
	}
	p, _ := lookupProgram("cgroup_ns")
	c := startProgram(t, p)
	name := fmt.Sprintf("amber-cgns-%d", c.pid)
	remove := func() {
		for _, h := range []string{"cpu", "pids"} {
			removeCgroup(t, filepath.Join("/sys/fs/cgroup", h, name, "inner"))
			removeCgroup(t, filepath.Join("/sys/fs/cgroup", h, name))
		}
	}
	t.Cleanup(func() { killChildren(t); remove() })
	c.mustDump()
	critDecodes(t, filepath.Join(c.images, "cgroup.img"))
	remove()
	c.mustRestoreDetached()
	self, err := os.Readlink("/proc/self/ns/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/cgroup", c.pid)); err != nil || ns == self {
		t.Errorf("restored pid %d: cgroup namespace %s (%v), want one other than the test's %s", c.pid, ns, err, self)
	}
	c.mustPass()
}
