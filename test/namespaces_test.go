package test

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNamespacesUTSIPC dumps ns_uts_ipc, started in UTS and IPC
// namespaces of its own with names and IPC settings of its own, and
// restores it: it must come back in new namespaces (not amber's, where
// it would find the machine's names), with its names and settings, and
// the machine's own names untouched.
func TestNamespacesUTSIPC(t *testing.T) {
	p, _ := lookupProgram("ns_uts_ipc")
	var host unix.Utsname
	if err := unix.Uname(&host); err != nil {
		t.Fatal(err)
	}
	c := startProgram(t, p)
	c.mustDump()
	c.mustRestoreDetached()
	for _, kind := range []string{"uts", "ipc"} {
		if nsInode(t, c.pid, kind) == nsInode(t, os.Getpid(), kind) {
			t.Errorf("restored pid %d is in the test's %s namespace, want one of its own", c.pid, kind)
		}
	}
	var after unix.Utsname
	if err := unix.Uname(&after); err != nil {
		t.Fatal(err)
	}
	if after != host {
		t.Errorf("the machine's names changed: %q %q, were %q %q", unix.ByteSliceToString(after.Nodename[:]),
			unix.ByteSliceToString(after.Domainname[:]), unix.ByteSliceToString(host.Nodename[:]), unix.ByteSliceToString(host.Domainname[:]))
	}
	c.mustPass()
}

// nsInode is the inode of pid's namespace of the kind.
func nsInode(t *testing.T, pid int, kind string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
