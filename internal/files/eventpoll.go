package files

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unsafe"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/eventpoll"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/proc"
)

// An epoll instance is its interest list (CRIU's eventpoll.c): every
// watched descriptor with its events and data, from fdinfo's "tfd:"
// lines. The kernel knows a watch by the file and the descriptor number
// it was added under, so restore adds each watch under that number once
// every descriptor of the task is in place. What is ready is not saved:
// the kernel computes it again as watches are added.

// eventpollLink is what /proc/PID/fd shows for an epoll instance.
const eventpollLink = "anon_inode:[eventpoll]"

// kcmpEpollTfd is KCMP_EPOLL_TFD of linux/kcmp.h.
const kcmpEpollTfd = 7

// addEventpoll records the epoll instance at pid's fd, whose fdinfo is
// info. Every watch must be on a descriptor that process owner still has
// (pid itself, but for an epoll in flight: amber holds it, a task the
// watched descriptors).
func (t *Table) addEventpoll(owner, pid, fd int, info proc.FdInfo, flags uint32) (uint32, fdinfo.FdTypes, error) {
	tfds, err := parseEpollTargets(info.ExtraLines)
	if err != nil {
		return 0, 0, fmt.Errorf("epoll: fdinfo: %w", err)
	}
	if err := resolveEpollTargets(owner, pid, fd, tfds); err != nil {
		return 0, 0, err
	}
	return t.addEntry(fdinfo.FdTypes_EVENTPOLL, func(e *fdinfo.FileEntry, id uint32) {
		for _, tfd := range tfds {
			tfd.Id = proto.Uint32(id)
		}
		e.Epfd = &eventpoll.EventpollFileEntry{Id: proto.Uint32(id), Flags: proto.Uint32(flags), Fown: newFown(), Tfd: tfds}
	})
}

// parseEpollTargets reads the "tfd:" lines of an epoll's fdinfo:
//
//	tfd:        5 events: 80000019 data: 1122334455667788  pos:0 ino:2e7d9 sdev:f
func parseEpollTargets(lines []string) ([]*eventpoll.EventpollTfdEntry, error) {
	var out []*eventpoll.EventpollTfdEntry
	for _, line := range lines {
		if !strings.HasPrefix(line, "tfd:") {
			continue
		}
		e, err := parseEpollTarget(fdinfoFields(line))
		if err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func parseEpollTarget(f map[string]string) (*eventpoll.EventpollTfdEntry, error) {
	tfd, err := numField(f, "tfd", 10, 31)
	if err != nil {
		return nil, err
	}
	events, err := hexField(f, "events", 32)
	if err != nil {
		return nil, err
	}
	data, err := hexField(f, "data", 64)
	if err != nil {
		return nil, err
	}
	e := &eventpoll.EventpollTfdEntry{Tfd: proto.Uint32(uint32(tfd)), Events: proto.Uint32(uint32(events)), Data: proto.Uint64(data)}
	// pos, ino and sdev help CRIU find dup'ed targets; older kernels
	// lack them.
	if _, ok := f["ino"]; !ok {
		return e, nil
	}
	pos, err := numField(f, "pos", 10, 64)
	if err != nil {
		return nil, err
	}
	ino, err := hexField(f, "ino", 64)
	if err != nil {
		return nil, err
	}
	dev, err := hexField(f, "sdev", 32)
	if err != nil {
		return nil, err
	}
	e.Pos, e.Inode, e.Dev = proto.Uint64(pos), proto.Uint64(ino), proto.Uint32(uint32(dev))
	return e, nil
}

// resolveEpollTargets finds, with kcmp, the descriptor of owner that
// holds the file of each watch of the epoll at pid's efd. That is the
// watched number, unless the process closed it, or reused it for another
// file, after adding the watch (the kernel keeps such a watch while
// another descriptor holds the file): the watch is then recorded under a
// descriptor that holds its file, as CRIU records it, for restore to add
// it under. A watch whose file no descriptor of owner holds cannot be
// restored.
func resolveEpollTargets(owner, pid, efd int, tfds []*eventpoll.EventpollTfdEntry) error {
	seen := map[uint32]uint32{} // watches per number: the toff of kcmp
	var others []int            // owner's descriptors, read on the first miss
	listed := false
	for _, t := range tfds {
		tfd := t.GetTfd()
		slot := epollSlot{uint32(efd), tfd, seen[tfd]}
		seen[tfd]++
		err := slot.holds(owner, pid, int(tfd))
		if err == nil {
			continue
		}
		if !listed {
			if others, err = proc.Fds(owner); err != nil {
				return fmt.Errorf("epoll fd %d: %w", efd, err)
			}
			listed = true
		}
		at := -1
		for _, fd := range others {
			if fd != int(tfd) && slot.holds(owner, pid, fd) == nil {
				at = fd
				break
			}
		}
		if at < 0 {
			return fmt.Errorf("epoll fd %d watches fd %d (events %#x), which the process closed or reused after adding it, "+
				"and no descriptor of pid %d holds its file now: such a watch cannot be restored", efd, tfd, t.GetEvents(), owner)
		}
		t.Tfd = proto.Uint32(uint32(at))
	}
	return nil
}

// epollSlot is struct kcmp_epoll_slot: the toff-th watch added under
// number tfd to the epoll at efd.
type epollSlot struct{ efd, tfd, toff uint32 }

// holds tells whether owner's descriptor fd is the file of the watch s
// of pid's epoll (nil), or why not.
func (s epollSlot) holds(owner, pid, fd int) error {
	r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(owner), uintptr(pid), kcmpEpollTfd, uintptr(fd), uintptr(unsafe.Pointer(&s)), 0)
	switch {
	case e != 0:
		return fmt.Errorf("kcmp: %w", e)
	case r != 0:
		return fmt.Errorf("fd %d is another file", fd)
	}
	return nil
}

// makeEventpoll creates epoll e; its watches are added once every
// descriptor of the task is at its number.
func (p *fdPlanner) makeEventpoll(e *fdinfo.FileEntry) (int, error) {
	ep := e.GetEpfd()
	if ep == nil {
		return 0, fmt.Errorf("file id %d: EVENTPOLL entry without epfd", e.GetId())
	}
	for _, t := range ep.GetTfd() {
		if !p.hasTarget(int(t.GetTfd())) {
			return 0, fmt.Errorf("epoll file id %d watches fd %d, which this task's table lacks", e.GetId(), t.GetTfd())
		}
	}
	what := fmt.Sprintf("epoll file id %d", e.GetId())
	fd := p.create(what, unix.SYS_EPOLL_CREATE1, 0)
	p.setNonblock(fd, ep.GetFlags(), what)
	p.deferToEnd(func() error { return p.addEpollWatches(e) })
	return fd, nil
}

// addEpollWatches plans EPOLL_CTL_ADD of every watch of epoll e.
func (p *fdPlanner) addEpollWatches(e *fdinfo.FileEntry) error {
	epfd, ok := p.table.Held[e.GetId()]
	if !ok {
		return fmt.Errorf("epoll file id %d: not placed in the task", e.GetId())
	}
	added := map[uint32]bool{}
	for _, t := range e.GetEpfd().GetTfd() {
		tfd := int(t.GetTfd())
		// A second watch of one number was added under another that
		// the process closed since (resolveEpollTargets): the kernel
		// takes one watch per file and number, so it goes under a copy
		// of the descriptor, closed at once, as the original was.
		again := added[t.GetTfd()]
		if again {
			tfd = p.b.CopyAbove(tfd, p.safe)
		}
		added[t.GetTfd()] = true
		p.b.Call(fmt.Sprintf("epoll fd %d: watch fd %d for events %#x data %#x", epfd, tfd, t.GetEvents(), t.GetData()),
			unix.SYS_EPOLL_CTL, uint64(epfd), unix.EPOLL_CTL_ADD, uint64(tfd), p.b.Bytes(epollEvent(t.GetEvents(), t.GetData())))
		if again {
			p.b.Close(tfd)
		}
	}
	return nil
}

// epollEvent encodes struct epoll_event, which is packed on x86-64: a
// 32-bit events mask and the 64-bit data right after it.
func epollEvent(events uint32, data uint64) []byte {
	b := binary.LittleEndian.AppendUint32(nil, events)
	return binary.LittleEndian.AppendUint64(b, data)
}
