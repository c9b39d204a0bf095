package test

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

// TestFileLocksRefused dumps file_locks_mix without --file-locks: the
// dump must fail naming the process and descriptor holding a lock, and
// leave the tree running with its locks (the program checks them).
func TestFileLocksRefused(t *testing.T) {
	c := startCase(t, "file_locks_mix")
	r := c.dump()
	requireFailure(t, r, fmt.Sprintf("pid %d fd 10: holds a shared flock", c.pid))
	requireFailure(t, r, "--file-locks")
	c.requireLive(c.pid, childrenOf(c.pid)[0])
	c.mustPass()
}

// TestFileLocksRestoreNeedsOption restores images holding locks without
// --file-locks: refused, nothing left behind; then with it: restored.
func TestFileLocksRestoreNeedsOption(t *testing.T) {
	c := startCase(t, "file_locks_mix")
	c.mustDump()
	r := c.amber(c.prog, c.restoreArgs(c.pidfile(), "-d")...)
	requireFailure(t, r, "restore with --file-locks")
	c.requireLive()
	c.mustRestoreDetached()
	c.mustPass()
}

// TestFileLocksRPC: go-criu's file_locks is --file-locks: a DUMP without
// it is refused and the program runs on; with it, DUMP and RESTORE keep
// the locks.
func TestFileLocksRPC(t *testing.T) {
	c := startCase(t, "file_locks_mix")
	tree := descendants(c.pid)
	err := newCriu(t).Dump(c.dumpOpts(), nil)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("pid %d fd 10: holds a shared flock", c.pid)) {
		t.Fatalf("dump without file_locks: %v; want the lock named", err)
	}
	requireRunning(t, c.pid)
	o := c.dumpOpts()
	o.FileLocks = proto.Bool(true)
	if err := newCriu(t).Dump(o, nil); err != nil {
		t.Fatalf("dump with file_locks: %v", err)
	}
	c.reapDumped(tree)
	o = c.rpcOpts("restore.log")
	o.FileLocks = proto.Bool(true)
	if err := newCriu(t).Restore(o, nil); err != nil {
		t.Fatalf("restore with file_locks: %v", err)
	}
	c.mustPass()
}

// TestFileLocksPidNamespace dumps ns_pid_lock, the init of a pid
// namespace of its own holding a POSIX lock: filelocks.img must name the
// holder by its pid in that namespace, which the restore makes, and the
// program's child finds the lock held by its parent again.
func TestFileLocksPidNamespace(t *testing.T) {
	p, _ := lookupProgram("ns_pid_lock")
	c := startProgram(t, p)
	tree := descendants(c.pid)
	if r := c.dump(fileLocks...); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	c.reapDumped(tree)
	pidfile := c.pidfile()
	if r := c.restoreDetached(pidfile); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	c.requireNewPidNamespace(pidfile)
	c.mustPass()
}
