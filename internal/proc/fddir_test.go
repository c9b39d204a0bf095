package proc

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFdDir checks that the links and fdinfo read through the opened
// directories are those FdPath and ReadFdinfo read by path, for a path
// longer than Link's first buffer, a pipe and an epoll (whose fdinfo may
// outgrow the small read), and that a closed descriptor is fs.ErrNotExist.
func TestFdDir(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 200), strings.Repeat("f", 200))
	if err := os.MkdirAll(filepath.Dir(long), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(long)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	watched := []int{p[0], p[1]}
	for range 16 { // enough watches for an fdinfo beyond the small read
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(efd)
		watched = append(watched, efd)
	}
	for _, fd := range watched {
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			t.Fatal(err)
		}
	}
	pid := os.Getpid()
	d, err := OpenFdDir(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, fd := range []int{int(f.Fd()), p[0], p[1], ep} {
		link, err := d.Link(fd)
		want, werr := FdPath(pid, fd)
		if err != nil || werr != nil || link != want {
			t.Errorf("fd %d: Link %q, %v; FdPath %q, %v", fd, link, err, want, werr)
		}
		info, err := d.Info(fd)
		wantInfo, werr := ReadFdinfo(pid, fd)
		if err != nil || werr != nil || info.Flags != wantInfo.Flags || info.Ino != wantInfo.Ino || !slices.Equal(info.ExtraLines, wantInfo.ExtraLines) {
			t.Errorf("fd %d: Info %+v, %v; ReadFdinfo %+v, %v", fd, info, err, wantInfo, werr)
		}
	}
	if link := len(long); link <= 256 {
		t.Fatalf("path of %d bytes does not outgrow Link's first buffer", link)
	}
	if _, err := d.Link(999999); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/fd/999999") {
		t.Errorf("Link of a closed fd: %v, want not-exist naming the fd", err)
	}
	if _, err := d.Info(999999); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/fdinfo/999999") {
		t.Errorf("Info of a closed fd: %v, want not-exist naming the fd", err)
	}
}
