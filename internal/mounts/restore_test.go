package mounts

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
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

// TestSlavesOfHost: an external mount whose master is a group of the
// tree's stays for propagate; one whose master no mount of the tree is
// in becomes a slave of the host's mount; a private one, or a bind that
// is not external, is none of them.
func TestSlavesOfHost(t *testing.T) {
	u := proto.Uint32
	steps := []Step{
		{How: New, Entry: &mnt.MntEntry{MntId: u(1), SharedId: u(5)}},
		{How: External, Entry: &mnt.MntEntry{MntId: u(2), MasterId: u(5)}},
		{How: External, Entry: &mnt.MntEntry{MntId: u(3), MasterId: u(9)}},
		{How: External, Entry: &mnt.MntEntry{MntId: u(4)}},
		{How: Bind, Entry: &mnt.MntEntry{MntId: u(6), MasterId: u(9)}},
	}
	got := slavesOfHost(steps)
	if len(got) != 1 || !got[3] {
		t.Errorf("slavesOfHost = %v, want only mount 3", got)
	}
}
