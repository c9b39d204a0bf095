package test

import (
	"path/filepath"
	"testing"
)

// nsMntExternal are the mounts ns_mnt binds from the host, marked
// external on dump (mountpoint to key).
var nsMntExternal = map[string]string{"/usr": "usr", "/dev/null": "null", "/ns_mnt.out": "out"}

// TestMountsNamespace dumps ns_mnt, a container in mount, pid and IPC
// namespaces of its own pivoted into ROOT (its scratch directory's
// root), with its host bind mounts marked external, and restores it
// with --root ROOT and their host sources: it must come back as pid 1
// of new namespaces and find its mounts, its tmpfs files and its open
// file as they were. Before, a dump that does not mark them external
// must fail naming one and leave the program running, and a restore
// without --root must fail saying so and leave nothing running.
func TestMountsNamespace(t *testing.T) {
	p, _ := lookupProgram("ns_mnt")
	c := startProgram(t, p)
	r := c.dump("--external", "mnt[/usr]:usr")
	requireFailure(t, r, "--external mnt[/")
	if !alive(c.pid) {
		t.Fatalf("pid %d died in a failed dump", c.pid)
	}
	var dumpArgs []string
	for mp, key := range nsMntExternal {
		dumpArgs = append(dumpArgs, "--external", "mnt["+mp+"]:"+key)
	}
	tree := descendants(c.pid)
	if r := c.dump(dumpArgs...); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	c.reapDumped(tree)
	pidfile := c.pidfile()
	requireFailure(t, c.amber(c.prog, c.restoreArgs(pidfile, "-d")...), "give its root with --root")
	if _, err := readPidfile(pidfile); err == nil {
		t.Fatalf("a failed restore wrote its pidfile")
	}
	c.requireLive()
	restoreArgs := []string{"-d", "--root", filepath.Join(c.dir, "root"),
		"--external", "mnt[usr]:/usr", "--external", "mnt[null]:/dev/null",
		"--external", "mnt[out]:" + filepath.Join(c.dir, "ns_mnt.out")}
	if r := c.amber(c.prog, c.restoreArgs(pidfile, restoreArgs...)...); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	c.requireNewPidNamespace(pidfile)
	c.mustPass()
}
