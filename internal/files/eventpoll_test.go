package files

import (
	"os"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/eventpoll"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/proc"
)

// watch is one epoll watch of a test layout.
type watch struct {
	fd     uint32
	events uint32
	data   uint64
}

// epoll adds an epoll instance with watches.
func (l *layout) epoll(flags uint32, watches ...watch) uint32 {
	return l.entry(fdinfo.FdTypes_EVENTPOLL, func(e *fdinfo.FileEntry, id uint32) {
		ep := &eventpoll.EventpollFileEntry{Id: proto.Uint32(id), Flags: proto.Uint32(flags), Fown: newFown()}
		for _, w := range watches {
			ep.Tfd = append(ep.Tfd, &eventpoll.EventpollTfdEntry{Id: proto.Uint32(id), Tfd: proto.Uint32(w.fd),
				Events: proto.Uint32(w.events), Data: proto.Uint64(w.data)})
		}
		e.Epfd = ep
	})
}

func TestParseEpollTargets(t *testing.T) {
	lines := []string{
		"tfd:        5 events: 80000019 data: 1122334455667788  pos:0 ino:2e7d9 sdev:f",
		"lock: something else",
		"tfd:       12 events:       1c data:                5",
	}
	got, err := parseEpollTargets(lines)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d targets, want 2", len(got))
	}
	if g := got[0]; g.GetTfd() != 5 || g.GetEvents() != 0x80000019 || g.GetData() != 0x1122334455667788 ||
		g.GetInode() != 0x2e7d9 || g.GetDev() != 0xf || g.Pos == nil {
		t.Errorf("first target %v", g)
	}
	if g := got[1]; g.GetTfd() != 12 || g.GetEvents() != 0x1c || g.GetData() != 5 || g.Inode != nil {
		t.Errorf("second target %v (no ino: older kernel)", g)
	}
	for _, bad := range []string{
		"tfd: x events: 1 data: 2",
		"tfd: 3 events: 1",
		"tfd: 3 events: 100000000 data: 1",
		"tfd: 3 events: 1 data: 2 pos:0 ino:zz sdev:1",
	} {
		if _, err := parseEpollTargets([]string{bad}); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestAddEventpollLive dumps a real epoll, then one whose watched
// descriptor was closed while a dup keeps its file (and the watch) alive.
func TestAddEventpollLive(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: 0x11, Pad: 0x22}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, p[0], &ev); err != nil {
		t.Fatal(err)
	}
	add := func() (*eventpoll.EventpollFileEntry, error) {
		info, err := proc.ReadFdinfo(os.Getpid(), ep)
		if err != nil {
			t.Fatal(err)
		}
		tab := NewTable()
		id, _, err := tab.addEventpoll(os.Getpid(), os.Getpid(), ep, info, info.Flags&^unix.O_CLOEXEC)
		if err != nil {
			return nil, err
		}
		return tab.Entries()[id-1].GetEpfd(), nil
	}
	e, err := add()
	if err != nil {
		t.Fatal(err)
	}
	want := uint64(0x22)<<32 | 0x11
	if len(e.GetTfd()) != 1 || e.GetTfd()[0].GetTfd() != uint32(p[0]) || e.GetTfd()[0].GetData() != want ||
		e.GetTfd()[0].GetEvents()&(unix.EPOLLIN|unix.EPOLLET) != unix.EPOLLIN|unix.EPOLLET {
		t.Errorf("entry %v, want fd %d EPOLLIN|EPOLLET data %#x", e, p[0], want)
	}
	dup, err := unix.FcntlInt(uintptr(p[0]), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dup)
	unix.Close(p[0])
	// The watch is kept by the kernel while dup holds the file: it is
	// recorded under dup, as CRIU records it.
	if e, err = add(); err != nil {
		t.Fatalf("watch of a closed fd: %v", err)
	}
	if len(e.GetTfd()) != 1 || e.GetTfd()[0].GetTfd() != uint32(dup) || e.GetTfd()[0].GetData() != want {
		t.Errorf("watch of closed fd %d: entry %v, want it under fd %d", p[0], e, dup)
	}
	// The number reused for another file (the pipe's write end): still
	// recorded under dup.
	if err := unix.Dup3(p[1], p[0], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	if e, err = add(); err != nil || e.GetTfd()[0].GetTfd() != uint32(dup) {
		t.Errorf("watch of reused fd %d: entry %v, error %v; want it under fd %d", p[0], e, err, dup)
	}
}

// TestAddEventpollUnheld: a watch whose file no descriptor of the owner
// holds (here the owner is another process) cannot be restored.
func TestAddEventpollUnheld(t *testing.T) {
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
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, p[0], &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		t.Fatal(err)
	}
	info, err := proc.ReadFdinfo(os.Getpid(), ep)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = NewTable().addEventpoll(1, os.Getpid(), ep, info, 0)
	if err == nil || !strings.Contains(err.Error(), "cannot be restored") {
		t.Errorf("watch no descriptor of pid 1 holds: error %v", err)
	}
}

func TestPlanEventpoll(t *testing.T) {
	l := newLayout()
	r := l.pipeEnd(1, false, false)
	w := l.pipeEnd(1, true, false)
	efd := l.eventfd(0, unix.O_RDWR|unix.O_NONBLOCK)
	// The epoll comes before the descriptors it watches; the outer one
	// watches it, and a second number of the pipe's read end.
	inner := l.epoll(unix.O_RDWR, watch{5, unix.EPOLLIN, 0x1111}, watch{3, unix.EPOLLIN | unix.EPOLLET, 0x2222}, watch{9, unix.EPOLLIN, 0x3333})
	outer := l.epoll(unix.O_RDWR|unix.O_NONBLOCK, watch{2, unix.EPOLLIN, 0x77})
	l.fd(2, inner, false).fd(3, efd, false).fd(5, r, false).fd(6, w, false).fd(7, outer, true).fd(9, r, false)
	s, _ := runFds(t, l, 0, 2, 3, 9)
	checkTable(t, s, l.in, l.known)
	checkWatches(t, s, 2, watch{5, unix.EPOLLIN, 0x1111}, watch{3, unix.EPOLLIN | unix.EPOLLET, 0x2222}, watch{9, unix.EPOLLIN, 0x3333})
	checkWatches(t, s, 7, watch{2, unix.EPOLLIN, 0x77})
	if s.fds[7].f.flags != unix.O_NONBLOCK || s.fds[2].f.flags != 0 {
		t.Errorf("status flags %#x and %#x, want O_NONBLOCK on fd 7 only", s.fds[7].f.flags, s.fds[2].f.flags)
	}
}

// TestPlanEventpollInherited restores a child whose epoll, and the pipe
// it watches, come from its parent: nothing is watched again.
func TestPlanEventpollInherited(t *testing.T) {
	l := newLayout()
	r := l.pipeEnd(1, false, false)
	ep := l.epoll(unix.O_RDWR, watch{4, unix.EPOLLIN, 1})
	l.fd(3, ep, false).fd(4, r, false)
	l.inherit(3, ep).inherit(4, r)
	_, prog := runFds(t, l)
	if strings.Contains(prog.String(), "watch fd") {
		t.Errorf("the inherited epoll is set up again:\n%s", prog)
	}
}

// checkWatches verifies the watches of the epoll at fd: each on the file
// that is at its number at the end.
func checkWatches(t *testing.T, s *fdSim, fd int, want ...watch) {
	t.Helper()
	ev := simEventAt(t, s, fd, "epoll")
	if len(ev.watches) != len(want) {
		t.Fatalf("epoll fd %d has %d watches, want %d", fd, len(ev.watches), len(want))
	}
	for i, w := range ev.watches {
		if w.fd != int(want[i].fd) || w.events != want[i].events || w.data != want[i].data {
			t.Errorf("epoll fd %d watch %d: fd %d events %#x data %#x, want %v", fd, i, w.fd, w.events, w.data, want[i])
		}
		if d, ok := s.fds[w.fd]; !ok || d.f != w.file {
			t.Errorf("epoll fd %d watch of fd %d: on %v, but fd %d is another file now", fd, w.fd, w.file, w.fd)
		}
	}
}

// TestPlanEventpollSameNumber restores two watches of one file under one
// number (a watch added under a number closed since, recorded under the
// number that holds its file): the second goes under a copy of the
// descriptor, closed once added.
func TestPlanEventpollSameNumber(t *testing.T) {
	l := newLayout()
	r := l.pipeEnd(1, false, false)
	ep := l.epoll(unix.O_RDWR, watch{5, unix.EPOLLIN, 0x1}, watch{5, unix.EPOLLIN | unix.EPOLLOUT, 0x2})
	l.fd(2, ep, false).fd(5, r, false)
	s, _ := runFds(t, l, 0, 2, 5)
	checkTable(t, s, l.in, l.known)
	ev := simEventAt(t, s, 2, "epoll")
	if len(ev.watches) != 2 {
		t.Fatalf("%d watches, want 2", len(ev.watches))
	}
	first, second := ev.watches[0], ev.watches[1]
	if first.fd != 5 || first.data != 0x1 || second.data != 0x2 || second.events != unix.EPOLLIN|unix.EPOLLOUT {
		t.Errorf("watches %+v, want fd 5 data 1, then data 2 EPOLLIN|EPOLLOUT", ev.watches)
	}
	if second.fd == 5 || second.file != first.file {
		t.Errorf("second watch under fd %d on %v, want another number on the file of fd 5 (%v)", second.fd, second.file, first.file)
	}
	if _, open := s.fds[second.fd]; open {
		t.Errorf("the copy fd %d the second watch went under is left open", second.fd)
	}
}

func TestPlanEventpollErrors(t *testing.T) {
	l := newLayout()
	l.fd(3, l.epoll(unix.O_RDWR, watch{8, unix.EPOLLIN, 0}), false)
	if _, err := planFds(l); err == nil || !strings.Contains(err.Error(), "watches fd 8") {
		t.Errorf("watch of a missing fd: error %v", err)
	}
	l = newLayout()
	l.fd(3, l.entry(fdinfo.FdTypes_EVENTPOLL, func(*fdinfo.FileEntry, uint32) {}), false)
	if _, err := planFds(l); err == nil || !strings.Contains(err.Error(), "without epfd") {
		t.Errorf("entry without epfd: error %v", err)
	}
}
