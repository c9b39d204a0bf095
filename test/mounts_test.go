package test

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
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
	tree := descendants(c.pid)
	if r := c.dump(nsMntDumpArgs()...); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	c.reapDumped(tree)
	pidfile := c.pidfile()
	requireFailure(t, c.amber(c.prog, c.restoreArgs(pidfile, "-d")...), "give its root with --root")
	if _, err := readPidfile(pidfile); err == nil {
		t.Fatalf("a failed restore wrote its pidfile")
	}
	c.requireLive()
	if r := c.amber(c.prog, c.restoreArgs(pidfile, nsMntRestoreArgs(c)...)...); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	c.requireNewPidNamespace(pidfile)
	c.mustPass()
}

// TestMountsHostFile: ns_mnt keeping a file of the host's open (on a
// mount outside its namespace, which no path inside reaches) is refused
// by the dump, naming the file, and runs on.
func TestMountsHostFile(t *testing.T) {
	t.Setenv("NS_MNT_HOST_FD", "1")
	p, _ := lookupProgram("ns_mnt")
	c := startProgram(t, p)
	requireFailure(t, c.dump(nsMntDumpArgs()...), "ns_mnt.out is on mount")
	if !alive(c.pid) {
		t.Fatalf("pid %d died in a failed dump", c.pid)
	}
	c.mustPass()
}

// nsMntDumpArgs mark ns_mnt's host binds external.
func nsMntDumpArgs() []string {
	var args []string
	for mp, key := range nsMntExternal {
		args = append(args, "--external", "mnt["+mp+"]:"+key)
	}
	return args
}

// nsMntRestoreArgs restore ns_mnt detached into its root, with the host
// sources of its external mounts.
func nsMntRestoreArgs(c *zcase) []string {
	return []string{"-d", "--root", filepath.Join(c.dir, "root"),
		"--external", "mnt[usr]:/usr", "--external", "mnt[null]:/dev/null",
		"--external", "mnt[out]:" + filepath.Join(c.dir, "ns_mnt.out")}
}

// TestMountsInterop: CRIU 4.2 dumps ns_mnt and amber restores it, then
// amber dumps it and CRIU restores it; the program checks its mounts,
// files and pid namespace each time.
func TestMountsInterop(t *testing.T) {
	t.Run("criu_dumps", func(t *testing.T) {
		bin := criuBin(t)
		p, _ := lookupProgram("ns_mnt")
		c := startProgram(t, p)
		tree := descendants(c.pid)
		if r := c.criu(bin, c.dumpArgs(nsMntDumpArgs()...)...); r.err != nil {
			t.Fatalf("criu dump failed: %v", criuLog(r, c.images))
		}
		c.reapDumped(tree)
		pidfile := c.pidfile()
		if r := c.amber(c.prog, c.restoreArgs(pidfile, nsMntRestoreArgs(c)...)...); r.err != nil {
			t.Fatalf("restore failed: %v", r)
		}
		c.requireNewPidNamespace(pidfile)
		c.mustPass()
	})
	t.Run("amber_dumps", func(t *testing.T) {
		bin := criuBin(t)
		p, _ := lookupProgram("ns_mnt")
		c := startProgram(t, p)
		tree := descendants(c.pid)
		if r := c.dump(nsMntDumpArgs()...); r.err != nil {
			t.Fatalf("dump failed: %v", r)
		}
		c.reapDumped(tree)
		pidfile := c.pidfile()
		if r := c.criu(bin, c.restoreArgs(pidfile, nsMntRestoreArgs(c)...)...); r.err != nil {
			t.Fatalf("criu restore failed: %v", criuLog(r, c.images))
		}
		c.requireNewPidNamespace(pidfile)
		c.mustPass()
	})
}

// TestMountsChildNamespace: ns_mnt with a child in a mount namespace of
// its own (NS_MNT_SUBNS), with a tmpfs and a bind there, a file open on
// the tmpfs and one its parent opened in its own namespace: the dump
// saves both namespaces and the restore makes the child's again from a
// copy of its parent's; the child checks its mounts and files, and that
// the file its parent opened is still on its parent's mount.
func TestMountsChildNamespace(t *testing.T) {
	t.Setenv("NS_MNT_SUBNS", "1")
	nsMntRoundTrip(t)
}

// TestMountsOvermounts: ns_mnt with mounts hidden under others
// (NS_MNT_OVER): two tmpfs stacked at one place, one over a tmpfs at a
// place below, a tmpfs over them all at a parent directory and a bind
// of part of it over it, and an unbindable tmpfs with a bind of part of
// it. The dump saves the files of the hidden and unbindable tmpfs
// mounts, the restore makes each mount under the one that hides it and
// the unbindable one unbindable again; the program unmounts them from
// the top, checking each one's files, and tries to bind the unbindable
// one.
func TestMountsOvermounts(t *testing.T) {
	t.Setenv("NS_MNT_OVER", "1")
	nsMntRoundTrip(t)
}

// TestMountsSlaveOfHost: ns_mnt with all its mounts slaves of the
// host's (NS_MNT_SLAVE), among them a bind of a shared tmpfs of the
// host's marked external: the restore must make that bind a slave of
// the host's tmpfs again (the same master:N), not private (CRIU's
// external master; zdtm's mnt_ext_multiple and mnt_root_ext).
func TestMountsSlaveOfHost(t *testing.T) {
	requireAmber(t)
	dir := t.TempDir()
	if err := unix.Mount("amber-slave", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs at %s: %v", dir, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		t.Fatalf("make %s shared: %v", dir, err)
	}
	t.Setenv("NS_MNT_SLAVE", dir)
	p, _ := lookupProgram("ns_mnt")
	c := startProgram(t, p)
	tree := descendants(c.pid)
	if r := c.dump(append(nsMntDumpArgs(), "--external", "mnt[/slave]:slave")...); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	c.reapDumped(tree)
	pidfile := c.pidfile()
	if r := c.amber(c.prog, c.restoreArgs(pidfile, append(nsMntRestoreArgs(c), "--external", "mnt[slave]:"+dir)...)...); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	c.requireNewPidNamespace(pidfile)
	c.mustPass()
}

// nsMntRoundTrip dumps ns_mnt in the mode its environment sets, reaps
// it, restores it in a new pid namespace and requires it to pass its
// own checks.
func nsMntRoundTrip(t *testing.T) {
	p, _ := lookupProgram("ns_mnt")
	c := startProgram(t, p)
	tree := descendants(c.pid)
	if r := c.dump(nsMntDumpArgs()...); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	c.reapDumped(tree)
	pidfile := c.pidfile()
	if r := c.amber(c.prog, c.restoreArgs(pidfile, nsMntRestoreArgs(c)...)...); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	c.requireNewPidNamespace(pidfile)
	c.mustPass()
}
