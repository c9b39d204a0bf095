package proc

import (
	"errors"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Captured from Linux 6.18.
const (
	fdinfoEventfd = "pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1038\n" +
		"eventfd-count:                5\neventfd-id: 1\neventfd-semaphore: 0\n"
	fdinfoEpoll = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\n" +
		"tfd:        3 events:       1c data:                3  pos:0 ino:40e sdev:10\n" +
		"tfd:        5 events:       19 data:                5  pos:0 ino:1cd2 sdev:f\n"
	fdinfoInotify = "pos:\t0\nflags:\t00\nmnt_id:\t17\nino:\t1038\n" +
		"inotify wd:2 ino:13 sdev:fe00000 mask:200 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:1300000000000000\n" +
		"inotify wd:1 ino:3c4a3 sdev:fe00000 mask:100 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a3c4030000000000\n"
	fdinfoTimerfd = "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\n" +
		"clockid: 1\nticks: 0\nsettime flags: 00\nit_value: (99, 998833709)\nit_interval: (1, 0)\n"
	fdinfoLock = "pos:\t0\nflags:\t02100001\nmnt_id:\t27\nino:\t9978094\n" +
		"lock:\t1: POSIX  ADVISORY  WRITE 5171 fe:00:9978094 0 EOF\n"
)

func TestParseFdinfoSamples(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       FdInfo
	}{
		{"eventfd", fdinfoEventfd, FdInfo{Flags: 0o4002, MntID: 17, Ino: 1038,
			Extra:      map[string]string{"eventfd-count": "5", "eventfd-id": "1", "eventfd-semaphore": "0"},
			ExtraLines: []string{"eventfd-count:                5", "eventfd-id: 1", "eventfd-semaphore: 0"}}},
		{"epoll", fdinfoEpoll, FdInfo{Flags: 0o2000002, MntID: 17, Ino: 1038, Extra: map[string]string{},
			ExtraLines: strings.Split(strings.TrimSpace(fdinfoEpoll), "\n")[4:]}},
		{"inotify", fdinfoInotify, FdInfo{MntID: 17, Ino: 1038, Extra: map[string]string{},
			ExtraLines: strings.Split(strings.TrimSpace(fdinfoInotify), "\n")[4:]}},
		{"timerfd", fdinfoTimerfd, FdInfo{Flags: 0o2, MntID: 17, Ino: 1038,
			Extra: map[string]string{"clockid": "1", "ticks": "0", "settime flags": "00",
				"it_value": "(99, 998833709)", "it_interval": "(1, 0)"},
			ExtraLines: strings.Split(strings.TrimSpace(fdinfoTimerfd), "\n")[4:]}},
		{"lock", fdinfoLock, FdInfo{Flags: 0o2100001, MntID: 27, Ino: 9978094,
			Extra:      map[string]string{"lock": "1: POSIX  ADVISORY  WRITE 5171 fe:00:9978094 0 EOF"},
			ExtraLines: []string{"lock:\t1: POSIX  ADVISORY  WRITE 5171 fe:00:9978094 0 EOF"}}},
	} {
		got, err := ParseFdinfo(strings.NewReader(tc.text))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		} else if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got\n%#v\nwant\n%#v", tc.name, got, tc.want)
		}
	}
}

func TestParseFdinfoErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"flags:\t02\nmnt_id:\t1\n", `no "pos:" line`},
		{"pos:\t0\nmnt_id:\t1\n", `no "flags:" line`},
		{"pos:\t0\nflags:\t02\n", `no "mnt_id:" line`},
		{"pos:\t0\nflags:\t08\nmnt_id:\t1\n", "line 2: flags: "},
		{"pos:\tx\nflags:\t02\nmnt_id:\t1\n", "line 1: pos: "},
	} {
		_, err := ParseFdinfo(strings.NewReader(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseFdinfo(%q) = %v, want error containing %q", tc.text, err, tc.want)
		}
	}
}

func TestReadFdinfoSelf(t *testing.T) {
	efd, err := unix.Eventfd(42, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	var st unix.Stat_t
	if err := unix.Fstat(efd, &st); err != nil {
		t.Fatal(err)
	}
	fi, err := ReadFdinfo(os.Getpid(), efd)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Flags&unix.O_CLOEXEC == 0 || fi.Flags&unix.O_NONBLOCK == 0 || fi.Ino != st.Ino {
		t.Errorf("got %+v, want O_CLOEXEC|O_NONBLOCK and ino %d", fi, st.Ino)
	}
	if got := fi.Extra["eventfd-count"]; got != "2a" { // the kernel prints it in hex
		t.Errorf("eventfd-count = %q, want 2a", got)
	}
}

// An fdinfo file longer than the first read's buffer (an epoll watching
// many descriptors) is read whole.
func TestReadFdinfoLong(t *testing.T) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	const watches = 64
	for i := range watches {
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(efd)
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := ReadFdinfo(os.Getpid(), ep)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range fi.ExtraLines {
		if strings.HasPrefix(l, "tfd:") {
			n++
		}
	}
	if n != watches || fi.Flags&unix.O_CLOEXEC == 0 {
		t.Errorf("read %d tfd lines and flags %#o, want %d and O_CLOEXEC", n, fi.Flags, watches)
	}
}

func TestReadFdinfoNoFd(t *testing.T) {
	_, err := ReadFdinfo(os.Getpid(), 1<<20)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/fdinfo/1048576") {
		t.Errorf("ReadFdinfo(no such fd) = %v, want fs.ErrNotExist naming the path", err)
	}
}

func FuzzParseFdinfo(f *testing.F) {
	for _, s := range []string{fdinfoEventfd, fdinfoEpoll, fdinfoInotify, fdinfoTimerfd, fdinfoLock} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		fi, err := ParseFdinfo(strings.NewReader(text))
		if err != nil {
			return
		}
		if len(fi.Extra) > len(fi.ExtraLines) {
			t.Fatalf("%d Extra keys from %d lines", len(fi.Extra), len(fi.ExtraLines))
		}
	})
}
