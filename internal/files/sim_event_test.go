package files

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"

	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// The simulator's model of event descriptors: eventfd, epoll, signalfd,
// timerfd and inotify, created and set up the way the kernel would, and
// refusing what the kernel would refuse.

// simEvent is the state of one event descriptor's file.
type simEvent struct {
	kind string // "eventfd", "epoll", "signalfd", "timerfd" or "inotify"

	count     uint64 // eventfd counter
	semaphore bool   // eventfd EFD_SEMAPHORE

	watches []simEpollWatch // epoll interest list, in order of adding

	mask uint64 // signalfd

	clock           uint64    // timerfd
	value, interval [2]uint64 // timerfd: time left and interval, (sec, nsec)
	ticks           uint64    // timerfd

	wds    map[int]simInotifyWatch // inotify watches by wd
	nextWd int                     // inotify: the number the next new watch gets
	queue  []int                   // inotify: wds of queued IN_IGNORED events
}

// simEpollWatch is one watch of an epoll: the kernel knows it by the
// file and the descriptor number it was added under.
type simEpollWatch struct {
	fd     int
	file   *simFile
	events uint32
	data   uint64
}

// simInotifyWatch is one inotify watch.
type simInotifyWatch struct {
	path string
	mask uint32
}

func (e *simEvent) String() string {
	switch e.kind {
	case "eventfd":
		return fmt.Sprintf("eventfd count %d semaphore %v", e.count, e.semaphore)
	case "epoll":
		return fmt.Sprintf("epoll with %d watches", len(e.watches))
	case "signalfd":
		return fmt.Sprintf("signalfd mask %#x", e.mask)
	case "timerfd":
		return fmt.Sprintf("timerfd clock %d left %v interval %v ticks %d", e.clock, e.value, e.interval, e.ticks)
	}
	return fmt.Sprintf("inotify with wds %v", slices.Sorted(maps.Keys(e.wds)))
}

// eventCall carries out c if it is a call on event descriptors, and
// reports whether it was.
func (s *fdSim) eventCall(c plan.Call) (bool, error) {
	a := c.Args
	switch c.Nr {
	case unix.SYS_EVENTFD2:
		return true, s.eventfd2(a)
	case unix.SYS_EPOLL_CREATE1:
		if a[0]&^unix.EPOLL_CLOEXEC != 0 {
			return true, unix.EINVAL
		}
		s.newEvent(&simEvent{kind: "epoll"}, 0, a[0] != 0)
		return true, nil
	case unix.SYS_EPOLL_CTL:
		return true, s.epollCtl(a)
	case unix.SYS_SIGNALFD4:
		return true, s.signalfd4(a)
	case unix.SYS_TIMERFD_CREATE:
		if !validTimerfdClock(uint32(a[0])) || a[1]&^(unix.TFD_NONBLOCK|unix.TFD_CLOEXEC) != 0 {
			return true, unix.EINVAL
		}
		s.newEvent(&simEvent{kind: "timerfd", clock: a[0]}, a[1]&unix.O_NONBLOCK, a[1]&unix.O_CLOEXEC != 0)
		return true, nil
	case unix.SYS_TIMERFD_SETTIME:
		return true, s.timerfdSettime(a)
	case unix.SYS_IOCTL:
		if ev, err := s.eventOf(a[0], "timerfd"); err == nil {
			return true, s.timerfdIoctl(ev, a)
		}
	case unix.SYS_INOTIFY_INIT1:
		if a[0]&^(unix.IN_NONBLOCK|unix.IN_CLOEXEC) != 0 {
			return true, unix.EINVAL
		}
		s.newEvent(&simEvent{kind: "inotify", wds: map[int]simInotifyWatch{}, nextWd: 1}, a[0]&unix.O_NONBLOCK, a[0]&unix.O_CLOEXEC != 0)
		return true, nil
	case unix.SYS_INOTIFY_ADD_WATCH:
		return true, s.inotifyAddWatch(a)
	case unix.SYS_INOTIFY_RM_WATCH:
		ev, err := s.eventOf(a[0], "inotify")
		if err != nil {
			return true, err
		}
		if _, ok := ev.wds[int(a[1])]; !ok {
			return true, fmt.Errorf("wd %d: %w", a[1], unix.EINVAL)
		}
		delete(ev.wds, int(a[1]))
		ev.queue = append(ev.queue, int(a[1])) // IN_IGNORED
		return true, nil
	case unix.SYS_READ:
		return s.read(a)
	case unix.SYS_WRITE:
		if ev, err := s.eventOf(a[0], "eventfd"); err == nil {
			return true, s.eventfdWrite(ev, a)
		}
	}
	return false, nil
}

// newEvent installs a new event file at the lowest free number.
func (s *fdSim) newEvent(ev *simEvent, status uint64, cloexec bool) {
	s.install(s.lowest(0), &simFile{kind: ev.kind, flags: status, ev: ev}, cloexec)
}

// eventOf is the event file of kind at fd.
func (s *fdSim) eventOf(fd uint64, kind string) (*simEvent, error) {
	d, err := s.get(fd)
	if err != nil {
		return nil, err
	}
	if d.f.ev == nil || d.f.ev.kind != kind {
		return nil, fmt.Errorf("fd %d is %v, not %s: %w", int(fd), d.f, kind, unix.EINVAL)
	}
	return d.f.ev, nil
}

func (s *fdSim) eventfd2(a [6]uint64) error {
	// The initial value is an unsigned int: more would be cut.
	if a[0] > math.MaxUint32 {
		return fmt.Errorf("eventfd2 initial value %#x does not fit 32 bits", a[0])
	}
	if a[1]&^(unix.EFD_NONBLOCK|unix.EFD_CLOEXEC|unix.EFD_SEMAPHORE) != 0 {
		return unix.EINVAL
	}
	ev := &simEvent{kind: "eventfd", count: a[0], semaphore: a[1]&unix.EFD_SEMAPHORE != 0}
	s.newEvent(ev, a[1]&unix.O_NONBLOCK, a[1]&unix.O_CLOEXEC != 0)
	return nil
}

func (s *fdSim) eventfdWrite(ev *simEvent, a [6]uint64) error {
	buf, err := s.mem(a[1], a[2])
	if err != nil {
		return err
	}
	if a[2] < 8 {
		return unix.EINVAL
	}
	v := binary.LittleEndian.Uint64(buf)
	if v == math.MaxUint64 || v > maxEventfdCount-ev.count {
		return fmt.Errorf("eventfd write of %#x to counter %#x would block: %w", v, ev.count, unix.EAGAIN)
	}
	ev.count += v
	return nil
}

func (s *fdSim) epollCtl(a [6]uint64) error {
	ev, err := s.eventOf(a[0], "epoll")
	if err != nil {
		return err
	}
	if a[1] != unix.EPOLL_CTL_ADD {
		return fmt.Errorf("epoll_ctl op %d not modelled", a[1])
	}
	target, err := s.get(a[2])
	if err != nil {
		return err
	}
	if target.f.ev == ev {
		return fmt.Errorf("epoll watching itself: %w", unix.EINVAL)
	}
	if target.f.kind == "file" {
		return fmt.Errorf("epoll watching regular %v: %w", target.f, unix.EPERM)
	}
	for _, w := range ev.watches {
		if w.fd == int(a[2]) && w.file == target.f {
			return fmt.Errorf("fd %d already watched: %w", a[2], unix.EEXIST)
		}
	}
	buf, err := s.mem(a[3], 12)
	if err != nil {
		return err
	}
	ev.watches = append(ev.watches, simEpollWatch{fd: int(a[2]), file: target.f,
		events: binary.LittleEndian.Uint32(buf), data: binary.LittleEndian.Uint64(buf[4:])})
	return nil
}

func (s *fdSim) signalfd4(a [6]uint64) error {
	if int64(a[0]) != -1 {
		return fmt.Errorf("signalfd4 on fd %d: only new signalfds are modelled", int64(a[0]))
	}
	if a[2] != sigsetSize || a[3]&^(unix.SFD_NONBLOCK|unix.SFD_CLOEXEC) != 0 {
		return unix.EINVAL
	}
	buf, err := s.mem(a[1], 8)
	if err != nil {
		return err
	}
	s.newEvent(&simEvent{kind: "signalfd", mask: binary.LittleEndian.Uint64(buf)}, a[3]&unix.O_NONBLOCK, a[3]&unix.O_CLOEXEC != 0)
	return nil
}

func (s *fdSim) timerfdSettime(a [6]uint64) error {
	ev, err := s.eventOf(a[0], "timerfd")
	if err != nil {
		return err
	}
	if a[1] != 0 {
		return fmt.Errorf("timerfd_settime flags %#x: only relative timers are planned", a[1])
	}
	buf, err := s.mem(a[2], 32)
	if err != nil {
		return err
	}
	var w [4]uint64
	for i := range w {
		w[i] = binary.LittleEndian.Uint64(buf[8*i:])
	}
	if w[1] >= nsecPerSec || w[3] >= nsecPerSec || int64(w[0]) < 0 || int64(w[2]) < 0 {
		return unix.EINVAL
	}
	ev.interval, ev.value, ev.ticks = [2]uint64{w[0], w[1]}, [2]uint64{w[2], w[3]}, 0
	return nil
}

func (s *fdSim) timerfdIoctl(ev *simEvent, a [6]uint64) error {
	if a[1] != tfdIocSetTicks {
		return fmt.Errorf("ioctl %#x not modelled", a[1])
	}
	buf, err := s.mem(a[2], 8)
	if err != nil {
		return err
	}
	if ev.ticks = binary.LittleEndian.Uint64(buf); ev.ticks == 0 {
		return unix.EINVAL
	}
	return nil
}

func (s *fdSim) inotifyAddWatch(a [6]uint64) error {
	ev, err := s.eventOf(a[0], "inotify")
	if err != nil {
		return err
	}
	path, err := s.str(a[1])
	if err != nil {
		return err
	}
	mask := uint32(a[2])
	if mask&unix.IN_ALL_EVENTS == 0 {
		return unix.EINVAL
	}
	mask &^= unix.IN_DONT_FOLLOW
	for wd, w := range ev.wds {
		if w.path == path { // the inode's watch: its mask changes
			ev.wds[wd] = simInotifyWatch{path, mask}
			return nil
		}
	}
	ev.wds[ev.nextWd] = simInotifyWatch{path, mask}
	ev.nextWd++
	return nil
}

// read models reading inotify events; reads of files that are no event
// descriptor are left to others.
func (s *fdSim) read(a [6]uint64) (bool, error) {
	d, err := s.get(a[0])
	if err != nil || d.f.ev == nil {
		return false, nil
	}
	if d.f.ev.kind != "inotify" {
		return true, fmt.Errorf("read from %v not modelled", d.f)
	}
	if _, err := s.mem(a[1], a[2]); err != nil {
		return true, err
	}
	ev := d.f.ev
	if len(ev.queue) == 0 {
		return true, fmt.Errorf("read of an empty inotify queue would block: %w", unix.EAGAIN)
	}
	if a[2] < inotifyEventSize {
		return true, unix.EINVAL
	}
	n := min(len(ev.queue), int(a[2]/inotifyEventSize))
	ev.queue = ev.queue[n:]
	return true, nil
}
