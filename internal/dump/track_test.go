package dump

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestParkingFd finds the parking number of this process: the top one
// its RLIMIT_NOFILE allows when free, else the highest free one below,
// or a userfaultfd met on the way (the tracking parked there before),
// both among the numbers tried one by one and below them, where the
// descriptors are listed.
func TestParkingFd(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	top := int(min(lim.Cur, maxParking)) - 1
	if top < 2*parkingProbes+8 {
		t.Skipf("RLIMIT_NOFILE %d: too few numbers", lim.Cur)
	}
	uffd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC, 0, 0)
	if errno != 0 {
		t.Skipf("userfaultfd: %v", errno)
	}
	defer unix.Close(int(uffd))
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	var taken []int
	take := func(fd int, from uintptr) {
		if err := unix.Dup3(int(from), fd, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		taken = append(taken, fd)
	}
	defer func() {
		for _, fd := range taken {
			unix.Close(fd)
		}
	}()
	want := func(what string, fd int) {
		t.Helper()
		got, err := parkingFd(os.Getpid())
		if err != nil || got != fd {
			t.Errorf("%s: parkingFd = %d, %v; want %d", what, got, err, fd)
		}
	}
	want("all free", top)
	for fd := top; fd > top-parkingProbes-4; fd-- {
		take(fd, null.Fd())
	}
	want("the top taken", top-parkingProbes-4)
	take(top-parkingProbes-2, uffd)
	want("a userfaultfd below the numbers tried one by one", top-parkingProbes-2)
	take(top-3, uffd)
	want("a userfaultfd among them", top-3)
}
