package files

import (
	"fmt"
	"math"
	"strconv"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/eventfd"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/proc"
)

// An eventfd is a 64-bit counter (CRIU's eventfd.c): dumped from fdinfo's
// "eventfd-count" (hex) and "eventfd-semaphore", restored with eventfd2.

// eventfdLink is what /proc/PID/fd shows for an eventfd.
const eventfdLink = "anon_inode:[eventfd]"

// efdSemaphore marks an eventfd in EFD_SEMAPHORE mode in the flags of its
// EventfdFileEntry. CRIU's image has no field for the mode; the flags are
// the open flags, whose access mode is always O_RDWR for an eventfd, so
// bit 0 (O_WRONLY, equal to EFD_SEMAPHORE) is free. CRIU ignores access
// mode bits when it restores flags (F_SETFL), so it still reads the
// image, and an image of CRIU reads as a non-semaphore eventfd, as CRIU
// restores it.
const efdSemaphore = unix.EFD_SEMAPHORE

// maxEventfdCount is the largest value an eventfd counter can hold.
const maxEventfdCount = math.MaxUint64 - 1

// addEventfd records the eventfd fd of pid whose fdinfo is info; warnf
// (if set) says when the kernel does not tell its mode.
func (t *Table) addEventfd(pid, fd int, info proc.FdInfo, flags uint32, warnf func(string, ...any)) (uint32, fdinfo.FdTypes, error) {
	count, err := strconv.ParseUint(info.Extra["eventfd-count"], 16, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("eventfd: fdinfo eventfd-count %q: %w", info.Extra["eventfd-count"], err)
	}
	flags &^= efdSemaphore
	semaphore, shown := info.Extra["eventfd-semaphore"]
	if semaphore == "1" {
		flags |= efdSemaphore
	}
	if !shown && warnf != nil {
		// Older kernels (Linux 6.1) do not print the mode: such an
		// eventfd is taken for a plain one, as CRIU takes it.
		warnf("pid %d fd %d: this kernel does not show whether the eventfd is a semaphore (EFD_SEMAPHORE): it is restored as a plain one", pid, fd)
	}
	return t.addEntry(fdinfo.FdTypes_EVENTFD, func(e *fdinfo.FileEntry, id uint32) {
		e.Efd = &eventfd.EventfdFileEntry{Id: proto.Uint32(id), Flags: proto.Uint32(flags), Fown: newFown(), Counter: proto.Uint64(count)}
	})
}

// makeEventfd creates eventfd e with its counter and mode. eventfd2 takes
// a 32-bit initial value; a larger counter is written in afterwards.
func (p *fdPlanner) makeEventfd(e *fdinfo.FileEntry) (int, error) {
	efd := e.GetEfd()
	if efd == nil {
		return 0, fmt.Errorf("file id %d: EVENTFD entry without efd", e.GetId())
	}
	count := efd.GetCounter()
	if count > maxEventfdCount {
		return 0, fmt.Errorf("file id %d: eventfd counter %#x above the maximum %#x", e.GetId(), count, uint64(maxEventfdCount))
	}
	flags := nonblock(efd.GetFlags()) | uint64(efd.GetFlags()&efdSemaphore)
	what := fmt.Sprintf("eventfd file id %d", e.GetId())
	if count <= math.MaxUint32 {
		return p.create(fmt.Sprintf("%s counter %d", what, count), unix.SYS_EVENTFD2, count, flags), nil
	}
	fd := p.create(what, unix.SYS_EVENTFD2, 0, flags)
	p.b.Call(fmt.Sprintf("set %s counter to %d", what, count), unix.SYS_WRITE, uint64(fd), p.b.Uint64s(count), 8)
	return fd, nil
}
