package mounts

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestInRootSymlinks: the tree's paths resolve inside its root, whatever
// its symbolic links say: a bind source or mountpoint behind a link to
// "/etc" or "../../" is looked up, and made, inside the root, never on
// the host.
func TestInRootSymlinks(t *testing.T) {
	outside := t.TempDir()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, to := range map[string]string{"abs": outside, "up": "../../../../../../.." + outside} {
		if err := os.Symlink(to, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rootFd)
	for _, p := range []string{"/abs/secret", "/up/secret"} {
		fd, err := inRoot(rootFd, p, unix.O_PATH)
		if err == nil {
			unix.Close(fd)
			t.Errorf("%s opened %s's file", p, outside)
		} else if !errors.Is(err, unix.ENOENT) {
			t.Errorf("%s: %v, want ENOENT", p, err)
		}
	}
	if err := makeTarget(rootFd, "/abs/mp/file", true); err == nil {
		t.Errorf("a mountpoint made behind a link that leads nowhere in the root")
	}
	if _, err := os.Stat(filepath.Join(outside, "mp")); err == nil {
		t.Errorf("a mountpoint was made on the host, in %s", outside)
	}
	if err := os.Mkdir(filepath.Join(root, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/inside", filepath.Join(root, "rel")); err != nil {
		t.Fatal(err)
	}
	if err := makeTarget(rootFd, "/rel/mp/file", true); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(root, "inside", "mp", "file")); err != nil || !st.Mode().IsRegular() {
		t.Errorf("the mountpoint is not inside the root: %v", err)
	}
}
