package files

import (
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/eventfd"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/proc"
)

// entry adds a file of type typ to l, filled by fill, and returns its id.
func (l *layout) entry(typ fdinfo.FdTypes, fill func(e *fdinfo.FileEntry, id uint32)) uint32 {
	id := l.nextID()
	e := &fdinfo.FileEntry{Type: typ.Enum(), Id: proto.Uint32(id)}
	fill(e, id)
	l.in.Files[id] = e
	return id
}

// eventfd adds an eventfd with count and flags (open flags, with
// efdSemaphore for the semaphore mode).
func (l *layout) eventfd(count uint64, flags uint32) uint32 {
	return l.entry(fdinfo.FdTypes_EVENTFD, func(e *fdinfo.FileEntry, id uint32) {
		e.Efd = &eventfd.EventfdFileEntry{Id: proto.Uint32(id), Flags: proto.Uint32(flags), Fown: newFown(), Counter: proto.Uint64(count)}
	})
}

// simEventAt is the event file at fd of s, of kind.
func simEventAt(t *testing.T, s *fdSim, fd int, kind string) *simEvent {
	t.Helper()
	d, ok := s.fds[fd]
	if !ok || d.f.ev == nil || d.f.ev.kind != kind {
		t.Fatalf("fd %d is not a %s:\n%s", fd, kind, s.dump())
	}
	return d.f.ev
}

func TestAddEventfd(t *testing.T) {
	tab := NewTable()
	info := proc.FdInfo{Extra: map[string]string{"eventfd-count": "2a", "eventfd-semaphore": "1"}}
	var warned []string
	warnf := func(f string, a ...any) { warned = append(warned, fmt.Sprintf(f, a...)) }
	id, typ, err := tab.addEventfd(1, 3, info, unix.O_RDWR|unix.O_NONBLOCK, warnf)
	if err != nil || typ != fdinfo.FdTypes_EVENTFD {
		t.Fatalf("addEventfd: %v %v", typ, err)
	}
	e := tab.Entries()[id-1].GetEfd()
	if e.GetCounter() != 42 || e.GetFlags() != unix.O_RDWR|unix.O_NONBLOCK|efdSemaphore || e.GetId() != id {
		t.Errorf("entry %v, want counter 42, flags O_RDWR|O_NONBLOCK|semaphore", e)
	}
	info.Extra["eventfd-semaphore"] = "0"
	id, _, _ = tab.addEventfd(1, 4, info, unix.O_RDWR|efdSemaphore, warnf)
	if fl := tab.Entries()[id-1].GetEfd().GetFlags(); fl != unix.O_RDWR {
		t.Errorf("flags %#x of a plain eventfd, want O_RDWR only", fl)
	}
	if len(warned) != 0 {
		t.Errorf("warnings with the mode shown: %q", warned)
	}
	// A kernel that does not show the mode (Linux 6.1): plain, said.
	delete(info.Extra, "eventfd-semaphore")
	id, _, _ = tab.addEventfd(1, 5, info, unix.O_RDWR, warnf)
	if fl := tab.Entries()[id-1].GetEfd().GetFlags(); fl != unix.O_RDWR || len(warned) != 1 || !strings.Contains(warned[0], "pid 1 fd 5") {
		t.Errorf("mode not shown: flags %#x, warnings %q", fl, warned)
	}
	for _, bad := range []string{"", "xyz", "1ffffffffffffffff"} {
		info.Extra["eventfd-count"] = bad
		if _, _, err := tab.addEventfd(1, 3, info, unix.O_RDWR, nil); err == nil || !strings.Contains(err.Error(), "eventfd-count") {
			t.Errorf("count %q: error %v, want one naming eventfd-count", bad, err)
		}
	}
}

// TestAddEventfdLive reads the fdinfo of a real eventfd.
func TestAddEventfdLive(t *testing.T) {
	fd, err := unix.Eventfd(7, unix.EFD_SEMAPHORE|unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	info, err := proc.ReadFdinfo(os.Getpid(), fd)
	if err != nil {
		t.Fatal(err)
	}
	tab := NewTable()
	id, _, err := tab.addEventfd(1, 3, info, info.Flags&^unix.O_CLOEXEC, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := tab.Entries()[id-1].GetEfd()
	if e.GetCounter() != 7 || e.GetFlags()&unix.O_NONBLOCK == 0 {
		t.Errorf("entry %v, want counter 7 and O_NONBLOCK", e)
	}
	if _, ok := info.Extra["eventfd-semaphore"]; ok && e.GetFlags()&efdSemaphore == 0 {
		t.Errorf("entry %v: semaphore mode lost", e)
	}
}

func TestPlanEventfd(t *testing.T) {
	l := newLayout()
	plain := l.eventfd(42, unix.O_RDWR)
	sem := l.eventfd(3, unix.O_RDWR|unix.O_NONBLOCK|efdSemaphore)
	big := l.eventfd(maxEventfdCount, unix.O_RDWR)
	l.fd(4, plain, false).fd(6, plain, true).fd(0, sem, false).fd(9, big, true)
	s, _ := runFds(t, l, 0, 1, 4, 5)
	checkTable(t, s, l.in, l.known)
	if ev := simEventAt(t, s, 4, "eventfd"); ev.count != 42 || ev.semaphore || s.fds[4].f.flags != 0 {
		t.Errorf("fd 4: %v flags %#x, want count 42, plain, blocking", ev, s.fds[4].f.flags)
	}
	if s.fds[6].f != s.fds[4].f {
		t.Errorf("fds 4 and 6 are not one eventfd")
	}
	if ev := simEventAt(t, s, 0, "eventfd"); ev.count != 3 || !ev.semaphore || s.fds[0].f.flags != unix.O_NONBLOCK {
		t.Errorf("fd 0: %v flags %#x, want count 3, semaphore, O_NONBLOCK", ev, s.fds[0].f.flags)
	}
	if ev := simEventAt(t, s, 9, "eventfd"); ev.count != maxEventfdCount {
		t.Errorf("fd 9: %v, want count %#x", ev, uint64(maxEventfdCount))
	}
}

func TestPlanEventfdErrors(t *testing.T) {
	l := newLayout()
	l.fd(3, l.eventfd(math.MaxUint64, unix.O_RDWR), false)
	if _, err := planFds(l); err == nil || !strings.Contains(err.Error(), "fd 3") || !strings.Contains(err.Error(), "counter") {
		t.Errorf("counter 2^64-1: error %v, want one naming fd 3 and the counter", err)
	}
	l = newLayout()
	l.fd(3, l.entry(fdinfo.FdTypes_EVENTFD, func(*fdinfo.FileEntry, uint32) {}), false)
	if _, err := planFds(l); err == nil || !strings.Contains(err.Error(), "without efd") {
		t.Errorf("entry without efd: error %v", err)
	}
}
