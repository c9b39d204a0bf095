package test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
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
