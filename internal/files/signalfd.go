package files

import (
	"fmt"
	"strconv"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/signalfd"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/proc"
)

// A signalfd is the set of signals it reads (CRIU's signalfd.c): fdinfo's
// "sigmask" (hex, bit N-1 for signal N), restored with signalfd4. The
// signals themselves stay pending in the task, which restores them.

// signalfdLink is what /proc/PID/fd shows for a signalfd.
const signalfdLink = "anon_inode:[signalfd]"

// addSignalfd records the signalfd whose fdinfo is info.
func (t *Table) addSignalfd(info proc.FdInfo, flags uint32) (uint32, fdinfo.FdTypes, error) {
	mask, err := strconv.ParseUint(info.Extra["sigmask"], 16, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("signalfd: fdinfo sigmask %q: %w", info.Extra["sigmask"], err)
	}
	return t.addEntry(fdinfo.FdTypes_SIGNALFD, func(e *fdinfo.FileEntry, id uint32) {
		e.Sgfd = &signalfd.SignalfdEntry{Id: proto.Uint32(id), Flags: proto.Uint32(flags), Fown: newFown(), Sigmask: proto.Uint64(mask)}
	})
}

// sigsetSize is the size of the kernel's sigset_t that signalfd4 takes.
const sigsetSize = 8

// makeSignalfd creates signalfd e: signalfd4(-1, &mask, 8, flags).
func (p *fdPlanner) makeSignalfd(e *fdinfo.FileEntry) (int, error) {
	sg := e.GetSgfd()
	if sg == nil {
		return 0, fmt.Errorf("file id %d: SIGNALFD entry without sgfd", e.GetId())
	}
	what := fmt.Sprintf("signalfd file id %d mask %#x", e.GetId(), sg.GetSigmask())
	noFd := ^uint64(0) // -1: a new signalfd
	return p.create(what, unix.SYS_SIGNALFD4, noFd, p.b.Uint64s(sg.GetSigmask()), sigsetSize, nonblock(sg.GetFlags())), nil
}
