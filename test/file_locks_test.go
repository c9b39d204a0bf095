package test

import (
	"fmt"
	"testing"
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
