package fsroot

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// tree makes a directory standing for a tree's root: /etc/f, an
// absolute symbolic link /link -> /etc/f, and /up -> ../../.. that
// would leave it.
func tree(t *testing.T) (string, *Root) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/f"), []byte("tree's"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, to := range map[string]string{"link": "/etc/f", "up": "../../.."} {
		if err := os.Symlink(to, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return dir, r
}

// TestLookupsStayInRoot: paths, absolute links and ".." resolve in the
// tree's root, never in amber's.
func TestLookupsStayInRoot(t *testing.T) {
	dir, r := tree(t)
	st, err := r.Stat("/link")
	if err != nil || st.Size() != int64(len("tree's")) || !st.Mode().IsRegular() {
		t.Fatalf("Stat /link: %v, %v; want the tree's /etc/f", st, err)
	}
	if st, err := r.Lstat("/link"); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("Lstat /link: %v, %v; want the link itself", st, err)
	}
	if to, err := r.Readlink("/link"); err != nil || to != "/etc/f" {
		t.Errorf("Readlink /link: %q, %v", to, err)
	}
	if st, err := r.Stat("/up/etc/f"); err != nil || st.Size() != int64(len("tree's")) {
		t.Errorf("Stat /up/etc/f: %v, %v; want the tree's /etc/f (.. stops at the root)", st, err)
	}
	fd, err := r.Open("/etc/f", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.PathOf(fd)
	unix.Close(fd)
	if err != nil || p != "/etc/f" {
		t.Errorf("PathOf: %q, %v; want /etc/f (under %s)", p, err, dir)
	}
	if _, err := r.Open("/proc/self/root", unix.O_PATH, 0); err == nil {
		t.Errorf("a magic link of amber's opened in the tree's root")
	}
}

// TestChangesStayInRoot: Link and Remove name files of the tree.
func TestChangesStayInRoot(t *testing.T) {
	dir, r := tree(t)
	if err := r.Link(filepath.Join(dir, "etc/f"), "/etc/g"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "etc/g")); err != nil || string(b) != "tree's" {
		t.Fatalf("the link: %q, %v", b, err)
	}
	if err := r.Remove("/etc/g"); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove("/link"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "link")); !os.IsNotExist(err) {
		t.Errorf("/link stays: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etc/f")); err != nil {
		t.Errorf("removing the link removed its target: %v", err)
	}
	if err := r.Remove("/etc"); err == nil {
		t.Errorf("a directory that is not empty removed")
	}
}

// TestAmbersRoot: a nil Root is amber's own.
func TestAmbersRoot(t *testing.T) {
	var r *Root
	if st, err := r.Stat("/"); err != nil || !st.IsDir() {
		t.Fatalf("Stat /: %v, %v", st, err)
	}
	if r.Mountinfo() != "/proc/self/mountinfo" || r.Close() != nil {
		t.Errorf("amber's root: %s", r.Mountinfo())
	}
}

// TestOpenNonblockLease: an O_NONBLOCK open that would break a lease
// fails at once with EWOULDBLOCK, which is EAGAIN: Open must not take it
// for openat2's rename race and try again until the lease break times
// out (45 s), as it once did.
func TestOpenNonblockLease(t *testing.T) {
	dir, r := tree(t)
	held, err := os.OpenFile(filepath.Join(dir, "etc/f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := unix.FcntlInt(held.Fd(), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
		t.Skipf("no write lease here: %v", err)
	}
	fd, err := r.Open("/etc/f", unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err == nil {
		unix.Close(fd)
		t.Fatal("opened a file under a write lease without breaking it")
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		t.Fatalf("got %v, want EWOULDBLOCK", err)
	}
}

// TestWritableDirReadOnlyMount: a file is made and removed in a
// directory of a read-only mount, through a writable copy of the mount,
// and shows on the read-only mount itself.
func TestWritableDirReadOnlyMount(t *testing.T) {
	dir, r := tree(t)
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("amber-test", ro, "tmpfs", 0, ""); err != nil {
		t.Skipf("mount a tmpfs: %v", err)
	}
	defer unix.Unmount(ro, unix.MNT_DETACH)
	if err := unix.Mount("", ro, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	if isRO, err := r.ReadOnly("/ro"); err != nil || !isRO {
		t.Fatalf("ReadOnly /ro: %v, %v", isRO, err)
	}
	if _, err := r.Open("/ro/f", unix.O_WRONLY|unix.O_CREAT, 0o600); !errors.Is(err, unix.EROFS) {
		t.Fatalf("a plain create on the read-only mount: %v, want EROFS", err)
	}
	wd, err := r.WritableDir("/ro")
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(wd)
	fd, err := unix.Openat(wd, "f", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if _, err := os.Stat(filepath.Join(ro, "f")); err != nil {
		t.Fatalf("the file on the read-only mount: %v", err)
	}
	if err := unix.Unlinkat(wd, "f", 0); err != nil {
		t.Fatal(err)
	}
	if isRO, err := r.ReadOnly("/ro"); err != nil || !isRO {
		t.Errorf("the mount is no longer read-only: %v, %v", isRO, err)
	}
}
