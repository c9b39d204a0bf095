package test

import "testing"

// TestInotifyForceIrmap dumps inotify00 with --force-irmap and
// --irmap-scan-path, as CRIU's inotify_irmap is: the options CRIU uses to
// find watched inodes by path are accepted, and the watches come back
// named from their file handles.
func TestInotifyForceIrmap(t *testing.T) {
	c := startCase(t, "inotify00")
	c.mustDump("--force-irmap", "--irmap-scan-path", "/etc")
	c.mustRestoreDetached()
	c.mustPass()
}
