package files

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFstatInfo checks that the FileInfo of an fstat says what os.Stat
// says of the same file, for every kind of file the dump meets.
func TestFstatInfo(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "reg")
	if err := os.WriteFile(reg, []byte("twelve bytes"), 0o640); err != nil {
		t.Fatal(err)
	}
	suid := filepath.Join(dir, "suid")
	if err := os.WriteFile(suid, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(suid, 0o755|os.ModeSetuid|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	sticky := filepath.Join(dir, "sticky")
	if err := os.Mkdir(sticky, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	sfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sfd)
	if err := unix.Bind(sfd, &unix.SockaddrUnix{Name: sock}); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(reg, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path  string
		flags int
	}{
		{reg, unix.O_RDONLY}, {suid, unix.O_RDONLY}, {sticky, unix.O_RDONLY}, {dir, unix.O_PATH},
		{fifo, unix.O_RDWR}, {sock, unix.O_PATH}, {link, unix.O_PATH | unix.O_NOFOLLOW},
		{"/dev/null", unix.O_RDONLY}, {"/proc/self/status", unix.O_RDONLY},
	} {
		fd, err := unix.Open(c.path, c.flags|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := fstatInfo(fd, "7")
		unix.Close(fd)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		want, err := os.Lstat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		ws, gs := want.Sys().(*syscall.Stat_t), got.Sys().(*syscall.Stat_t)
		if got.Name() != "7" || got.Mode() != want.Mode() || got.Size() != want.Size() ||
			!got.ModTime().Equal(want.ModTime()) || got.IsDir() != want.IsDir() || *gs != *ws {
			t.Errorf("%s: fstat says %v %d %v, os.Lstat %v %d %v", c.path, got.Mode(), got.Size(), got.ModTime(), want.Mode(), want.Size(), want.ModTime())
		}
	}
}
