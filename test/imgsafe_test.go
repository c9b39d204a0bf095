package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// The images directory is amber's, whoever else can write it: a root
// dump or restore never reads or writes a file through a symbolic link
// planted there, and a root restore refuses images that a user other
// than root and the caller can write.

// plantVictim creates a file outside the images directory for symbolic
// links to point to, and returns its path.
func plantVictim(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(p, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func requireVictimIntact(t *testing.T, path string) {
	t.Helper()
	if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
		t.Fatalf("%s now holds %q (%v): amber wrote through a symbolic link", path, b, err)
	}
}

func plantLink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestDumpNotThroughSymlinks plants symbolic links under the names of
// images the dump writes: the dump writes the images in their place and
// leaves the links' target alone; the images restore.
func TestDumpNotThroughSymlinks(t *testing.T) {
	c := startCase(t, "heap_globals")
	v := plantVictim(t)
	names := []string{"pstree.img", "inventory.img", fmt.Sprintf("core-%d.img", c.pid), "pages-1.img", "amber-mtimes.txt"}
	for _, n := range names {
		plantLink(t, v, filepath.Join(c.images, n))
	}
	c.mustDump()
	requireVictimIntact(t, v)
	for _, n := range names {
		if st, err := os.Lstat(filepath.Join(c.images, n)); err != nil || !st.Mode().IsRegular() {
			t.Errorf("%s: %v, %v; want the image, a regular file", n, st, err)
		}
	}
	c.mustRestoreDetached()
	c.mustPass()
}

// TestRestoreLogNotThroughSymlink: a symbolic link planted as the
// restore's log (-o restore.log, in the images directory) is refused,
// naming it, and its target left alone.
func TestRestoreLogNotThroughSymlink(t *testing.T) {
	c := startCase(t, "heap_globals")
	c.mustDump()
	v := plantVictim(t)
	log := filepath.Join(c.images, "restore.log")
	plantLink(t, v, log)
	r := c.restoreDetached(c.pidfile())
	requireFailure(t, r, log)
	requireFailure(t, r, "symbolic link")
	requireVictimIntact(t, v)
	c.requireLive()
	if err := os.Remove(log); err != nil {
		t.Fatal(err)
	}
	c.mustRestoreDetached()
	c.mustPass()
}

// TestRestoreRefusesSymlinkedImage: an image replaced by a symbolic link
// to a copy of itself is not read, even though it is a valid image.
func TestRestoreRefusesSymlinkedImage(t *testing.T) {
	c := startCase(t, "heap_globals")
	c.mustDump()
	core := filepath.Join(c.images, fmt.Sprintf("core-%d.img", c.pid))
	moved := filepath.Join(c.dir, "core-elsewhere.img")
	if err := os.Rename(core, moved); err != nil {
		t.Fatal(err)
	}
	plantLink(t, moved, core)
	r := c.restoreDetached(c.pidfile())
	requireFailure(t, r, core)
	requireFailure(t, r, "symbolic link")
	c.requireLive()
}

// asNobody runs a shell command as the unprivileged user nobody (65534)
// in dir.
func asNobody(t *testing.T, dir, script string) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("as nobody: %s: %v\n%s", script, err, out)
	}
}

const nobody = 65534

// TestRestoreUntrustedImages: a root restore refuses images that another
// user can write or has written, naming the path at fault: an images
// directory every user can write, a directory above it that belongs to
// another user, an image an ordinary user edited. --trust-images restores
// them anyway.
func TestRestoreUntrustedImages(t *testing.T) {
	c := startCase(t, "heap_globals")
	c.mustDump()
	chmod := func(p string, mode os.FileMode) {
		t.Helper()
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(path, why string) {
		t.Helper()
		r := c.restoreDetached(c.pidfile())
		requireFailure(t, r, path+" is "+why)
		requireFailure(t, r, "--trust-images")
		c.requireLive()
	}

	// Writable by all and without its manifest (zdtm's directories are
	// writable by all; a shared directory is read only as verified).
	manifest := filepath.Join(c.images, "amber-manifest.txt")
	if err := os.Rename(manifest, manifest+".away"); err != nil {
		t.Fatal(err)
	}
	chmod(c.images, 0o777)
	refused(c.images, "writable by every user")
	chmod(c.images, 0o755)
	if err := os.Rename(manifest+".away", manifest); err != nil {
		t.Fatal(err)
	}

	if err := os.Chown(c.dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	refused(c.dir, "owned by uid 65534")
	if err := os.Chown(c.dir, 0, 0); err != nil {
		t.Fatal(err)
	}

	// nobody edits the core image: it needs to reach the directory and,
	// for a moment, to write it.
	for _, d := range []string{c.dir, filepath.Dir(c.dir)} {
		chmod(d, 0o711)
	}
	core := fmt.Sprintf("core-%d.img", c.pid)
	chmod(filepath.Join(c.images, core), 0o644)
	chmod(c.images, 0o777)
	asNobody(t, c.images, "cp "+core+" core.tmp && mv -f core.tmp "+core)
	chmod(c.images, 0o755)
	refused(filepath.Join(c.images, core), "owned by uid 65534")

	pidfile := c.pidfile()
	if r := c.amber(c.prog, c.restoreArgs(pidfile, "-d", "--trust-images")...); r.err != nil {
		t.Fatalf("restore --trust-images: %v", r)
	}
	c.checkRestoredPid(pidfile)
	c.mustPass()
}

// TestRestoreSharedImagesDir: images in a directory every user can write
// (as CRIU's zdtm leaves them) restore without --trust-images when their
// manifest verifies them: private pages, and the pages of anonymous
// shared memory that a forked child shares.
func TestRestoreSharedImagesDir(t *testing.T) {
	for _, prog := range []string{"heap_globals", "shm_anon_fork"} {
		t.Run(prog, func(t *testing.T) {
			c := startCase(t, prog)
			c.mustDump()
			if err := os.Chmod(c.images, 0o777); err != nil {
				t.Fatal(err)
			}
			c.mustRestoreDetached()
			c.mustPass()
		})
	}
}

// TestDumpRemovesStaleImages dumps into a directory that holds images of
// another dump (of other PIDs) and files of the user's: the stale images
// go (a symbolic link among them without harm to its target), the user's
// files stay.
func TestDumpRemovesStaleImages(t *testing.T) {
	c := startCase(t, "heap_globals")
	v := plantVictim(t)
	stale := []string{"core-4194000.img", "mm-4194000.img", "pagemap-4194000.img", "pages-9.img", "tcp-stream-1a2b.img"}
	for _, n := range append(stale, "disk.img", "notes.txt") {
		if err := os.WriteFile(filepath.Join(c.images, n), []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	plantLink(t, v, filepath.Join(c.images, "fs-4194000.img"))
	c.mustDump()
	for _, n := range append(stale, "fs-4194000.img") {
		if _, err := os.Lstat(filepath.Join(c.images, n)); err == nil {
			t.Errorf("%s of the earlier dump is still there", n)
		}
	}
	for _, n := range []string{"disk.img", "notes.txt"} {
		if _, err := os.Stat(filepath.Join(c.images, n)); err != nil {
			t.Errorf("the user's %s was removed: %v", n, err)
		}
	}
	requireVictimIntact(t, v)
	c.mustRestoreDetached()
	c.mustPass()
}
