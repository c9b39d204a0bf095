package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDumpPidNamespaceInit dumps a tree whose root is the init of a pid
// namespace with children, as a container's is. When its init dies the
// kernel kills the namespace and the dying init waits for its children,
// which amber traces: amber must reap them for the kill to finish. It
// used to hang there for good.
func TestDumpPidNamespaceInit(t *testing.T) {
	requireAmber(t)
	dir := t.TempDir()
	init := exec.Command("/bin/sh", "-c", "sleep 1000 & sleep 1000 & wait")
	init.Dir = dir
	init.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Setsid: true}
	if err := init.Start(); err != nil {
		t.Fatal(err)
	}
	pid := init.Process.Pid
	init.Process.Release()
	t.Cleanup(func() { killChildren(t) })
	deadline := time.Now().Add(readyTimeout)
	for len(childrenOf(pid)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("pid namespace init %d: children not started", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	tree := append([]int{pid}, descendants(pid)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd, stdout, stderr, err := amberCommand(ctx, testEnv.amber, dir, program{}, "dump", "-t", strconv.Itoa(pid), "-D", dir, "-v4", "-o", "dump.log")
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	defer stderr.Close()
	if err := cmd.Run(); err != nil {
		t.Fatalf("dump of pid namespace init %d: %v (within 30 s: %v)\n%s", pid, err, ctx.Err(), readAll(stderr))
	}
	for _, p := range tree {
		if err := reapOrphan(p, exitTimeout); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNamespacesPIDMountProc dumps ns_proc, the init of pid and mount
// namespaces of its own pivoted into ROOT with a proc of its pid
// namespace, holding files of that /proc (its own maps, a child's stat,
// /proc/1/status), a pidfd of a dead child and shared anonymous memory
// through map_files, files of /proc/DEAD of a child reaped since (and
// its working directory there), and restores it with --root ROOT: its
// /proc files must be those of its own /proc again (not amber's, where
// its PIDs name other processes), those of /proc/DEAD of a dead PID of
// its namespace, its pidfd one of a dead process, its memory its
// contents.
func TestNamespacesPIDMountProc(t *testing.T) {
	c := startNamespaced(t, "ns_proc", unix.CLONE_NEWPID|unix.CLONE_NEWNS)
	tree := descendants(c.pid)
	if r := c.dump("--external", "mnt[/ns_proc.out]:out"); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	c.reapDumped(tree)
	pidfile := c.pidfile()
	root := filepath.Join(c.dir, "root")
	out := filepath.Join(c.dir, "ns_proc.out")
	if r := c.amber(c.prog, c.restoreArgs(pidfile, "-d", "--root", root, "--external", "mnt[out]:"+out)...); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	c.requireNewPidNamespace(pidfile)
	c.mustPass()
}

// TestNamespacesUser dumps ns_userns, a rootless container's init: in
// user, pid and mount namespaces of its own, uid and gid 0 inside being
// 100000 outside, pivoted into ROOT with a tmpfs holding files of two
// owners, a child with other ids and no capabilities. The dump must
// record the user namespace as CRIU does (userns-ID.img with its maps,
// the ids in the namespace's view), and the restore make it again, with
// the pid and mount namespaces inside it: the program checks its maps,
// ids, capabilities and files itself.
func TestNamespacesUser(t *testing.T) {
	c := startNamespaced(t, "ns_userns", unix.CLONE_NEWPID|unix.CLONE_NEWNS)
	c.mustDumpRestoreUserns(false)
}

// TestNamespacesUserProcSubmount is TestNamespacesUser restored by an
// amber whose /proc has a mount under it, as a host's with systemd's
// binfmt_misc automount has (here a tmpfs on /proc/sys/fs/binfmt_misc,
// in a mount namespace of amber's own): in the tree's user namespace,
// amber's /proc laid over the tree's takes it along, locked to it, and
// the copy ns_userns's nested child's mount namespace is restored from
// has it, under amber's /proc, where it goes with it.
func TestNamespacesUserProcSubmount(t *testing.T) {
	if _, err := os.Stat("/proc/sys/fs/binfmt_misc"); err != nil {
		t.Skipf("no /proc/sys/fs/binfmt_misc to mount on: %v", err)
	}
	c := startNamespaced(t, "ns_userns", unix.CLONE_NEWPID|unix.CLONE_NEWNS)
	c.mustDumpRestoreUserns(true)
}

// mustDumpRestoreUserns dumps ns_userns and restores it into its root,
// under a mount on amber's /proc if procSubmount, and checks its user
// namespace, and its own checks.
func (c *zcase) mustDumpRestoreUserns(procSubmount bool) {
	t := c.t
	t.Helper()
	tree := descendants(c.pid)
	if r := c.dump("--external", "mnt[/ns_userns.out]:out"); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	critShowsUserns(t, c)
	c.reapDumped(tree)
	pidfile := c.pidfile()
	root := filepath.Join(c.dir, "root")
	out := filepath.Join(c.dir, "ns_userns.out")
	args := c.restoreArgs(pidfile, "-d", "--root", root, "--external", "mnt[out]:"+out)
	var r amberResult
	if procSubmount {
		script := `mount -t tmpfs amber-test /proc/sys/fs/binfmt_misc && exec "$0" "$@"`
		r = runAmber("/usr/bin/unshare", c.dir, program{}, append([]string{"-m", "--propagation", "private", "/bin/sh", "-c", script, testEnv.amber}, args...)...)
		c.results = append(c.results, r)
	} else {
		r = c.amber(c.prog, args...)
	}
	if r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	c.requireNewPidNamespace(pidfile)
	if nsInode(t, c.pid, "user") == nsInode(t, os.Getpid(), "user") {
		t.Errorf("restored pid %d is in the test's user namespace", c.pid)
	}
	if uids, err := readStatusField(c.pid, "Uid"); err != nil || uids != "100000\t100000\t100000\t100000" {
		t.Errorf("restored pid %d: Uid %q (%v), want 100000 four times as amber sees it", c.pid, uids, err)
	}
	c.mustPass()
}

// critShowsUserns checks the user namespace's images with crit: the
// root's ids name a user namespace other than the inventory's,
// userns-ID.img holds the driver's maps, and the root's credentials are
// uid 0 (the namespace's view, CRIU's), not 100000.
func critShowsUserns(t *testing.T, c *zcase) {
	t.Helper()
	crit := critCommand(t)
	show := func(name string) string {
		out, err := exec.Command(crit[0], append(crit[1:], "show", filepath.Join(c.images, name))...).CombinedOutput()
		if err != nil {
			t.Fatalf("crit show %s: %v\n%s", name, err, out)
		}
		return string(out)
	}
	var ids struct {
		Entries []struct {
			UserNsID uint32 `json:"user_ns_id"`
		} `json:"entries"`
	}
	if err := json.Unmarshal([]byte(show("ids-1.img")), &ids); err != nil || len(ids.Entries) != 1 {
		t.Fatalf("ids-1.img: %v", err)
	}
	id := ids.Entries[0].UserNsID
	var inv struct {
		Entries []struct {
			RootIDs struct {
				UserNsID uint32 `json:"user_ns_id"`
			} `json:"root_ids"`
		} `json:"entries"`
	}
	if err := json.Unmarshal([]byte(show("inventory.img")), &inv); err != nil || len(inv.Entries) != 1 {
		t.Fatalf("inventory.img: %v", err)
	}
	if id == 0 || id == inv.Entries[0].RootIDs.UserNsID {
		t.Fatalf("the root's user namespace id %d is the dumper's (%d)", id, inv.Entries[0].RootIDs.UserNsID)
	}
	maps := show(fmt.Sprintf("userns-%d.img", id))
	for _, want := range []string{`"first": 0`, `"lower_first": 100000`, `"count": 65536`, `"uid_map"`, `"gid_map"`} {
		if !strings.Contains(maps, want) {
			t.Errorf("userns-%d.img lacks %s:\n%s", id, want, maps)
		}
	}
	core := show("core-1.img")
	if !strings.Contains(core, `"uid": 0,`) || strings.Contains(core, "100000") {
		t.Errorf("core-1.img: the root's credentials are not uid 0:\n%s", core)
	}
}

// TestNamespacesUserRefused: what amber cannot make again is refused at
// dump, naming the pid and why, and the tree runs on: a root in a user
// namespace nested in another than amber's, and a root in a user
// namespace of its own with a child in a second one (util-linux's
// unshare makes them).
func TestNamespacesUserRefused(t *testing.T) {
	requireAmber(t)
	if _, err := os.Stat("/usr/bin/unshare"); err != nil {
		t.Skip("no /usr/bin/unshare")
	}
	for _, tc := range []struct {
		name, script, want string
		procs              int
	}{
		{"nested", "exec unshare --user --map-root-user unshare --user --map-root-user sleep 1000", "nested in another one than amber's", 1},
		{"second", "exec unshare --user --map-root-user sh -c 'unshare --user sleep 1000 & exec sleep 1000'", "in a user namespace other than its root's", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(func() { killChildren(t) })
			cmd := exec.Command("/bin/sh", "-c", tc.script)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			cmd.Process.Release()
			// Ready when every process of the tree runs sleep in a user
			// namespace other than the test's.
			deadline := time.Now().Add(readyTimeout)
			for !sleepingInUserns(t, append([]int{pid}, descendants(pid)...), tc.procs) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: not ready after %v", tc.script, readyTimeout)
				}
				time.Sleep(20 * time.Millisecond)
			}
			dir := t.TempDir()
			r := runAmber(testEnv.amber, dir, program{}, "dump", "-t", strconv.Itoa(pid), "-D", dir)
			if r.err == nil || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "pid ") {
				t.Fatalf("%v\nwant a refusal saying %q", r, tc.want)
			}
			if err := unix.Kill(pid, 0); err != nil {
				t.Fatalf("pid %d after the refused dump: %v", pid, err)
			}
		})
	}
}

// sleepingInUserns tells whether pids are n processes that all run
// sleep in a user namespace other than the test's.
func sleepingInUserns(t *testing.T, pids []int, n int) bool {
	if len(pids) != n {
		return false
	}
	for _, p := range pids {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
		if err != nil || strings.TrimSpace(string(comm)) != "sleep" {
			return false
		}
		if nsInode(t, p, "user") == nsInode(t, os.Getpid(), "user") {
			return false
		}
	}
	return true
}
