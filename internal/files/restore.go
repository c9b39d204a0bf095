package files

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// RestoreInput is what planning a descriptor table needs.
type RestoreInput struct {
	Fds      []*fdinfo.FdinfoEntry
	Files    Index
	Pipes    map[uint32][]byte // pipes-data by pipe id
	ShellJob bool
	// AmberPid is amber's own PID: with --shell-job the task takes its
	// terminal from amber's standard input through pidfd_getfd.
	AmberPid int
	// Stat looks files up as they are now (os.Stat outside tests).
	Stat func(path string) (os.FileInfo, error)
}

// reopenFlags are the open flags that make sense to pass again; creation
// and truncation flags must never be replayed.
const reopenFlags = unix.O_ACCMODE | unix.O_APPEND | unix.O_NONBLOCK | unix.O_DIRECT |
	unix.O_NOATIME | unix.O_SYNC | unix.O_DSYNC | unix.O_DIRECTORY | unix.O_PATH | unix.O_LARGEFILE

// CheckReg verifies that a regular file is still what was dumped: it
// exists and, for a regular file, has the same size.
func CheckReg(e *fdinfo.FileEntry, stat func(string) (os.FileInfo, error)) error {
	reg := e.GetReg()
	st, err := stat(reg.GetName())
	if err != nil {
		return fmt.Errorf("file %s (id %d) is gone since the dump: %w", reg.GetName(), e.GetId(), err)
	}
	if reg.Size != nil && st.Mode().IsRegular() && uint64(st.Size()) != reg.GetSize() {
		return fmt.Errorf("file %s (id %d) changed since the dump: size %d, was %d", reg.GetName(), e.GetId(), st.Size(), reg.GetSize())
	}
	return nil
}

// PlanFds plans recreating the descriptor table: afterwards the task has
// exactly the dumped descriptors, with their numbers, flags and positions.
func PlanFds(b *plan.Builder, in *RestoreInput) error {
	fds := slices.Clone(in.Fds)
	slices.SortFunc(fds, func(a, c *fdinfo.FdinfoEntry) int { return int(a.GetFd()) - int(c.GetFd()) })
	safe := 0 // above every target: where pipe ends wait for their number
	for _, f := range fds {
		safe = max(safe, int(f.GetFd())+1)
	}
	placed := map[uint32]int{} // file id -> a descriptor that has it
	pipeEnds := map[uint32][2]int{}
	for _, f := range fds {
		if err := planFd(b, in, f, placed, pipeEnds, safe); err != nil {
			return fmt.Errorf("fd %d: %w", f.GetFd(), err)
		}
	}
	for _, ends := range pipeEnds {
		for _, fd := range ends {
			if fd >= 0 {
				b.Close(fd)
			}
		}
	}
	return nil
}

func planFd(b *plan.Builder, in *RestoreInput, f *fdinfo.FdinfoEntry, placed map[uint32]int, pipeEnds map[uint32][2]int, safe int) error {
	target, cloexec := int(f.GetFd()), f.GetFlags()&unix.FD_CLOEXEC != 0
	if fd, ok := placed[f.GetId()]; ok {
		// A dup of a descriptor already made: share its open file.
		b.Call(fmt.Sprintf("dup fd %d to %d", fd, target), unix.SYS_DUP3, uint64(fd), uint64(target), cloexecFlag(cloexec))
		b.Mark(target)
		return nil
	}
	e, ok := in.Files[f.GetId()]
	if !ok {
		return fmt.Errorf("files.img has no file with id %d", f.GetId())
	}
	var fd int
	var err error
	switch e.GetType() {
	case fdinfo.FdTypes_REG:
		fd, err = planReg(b, in, e)
	case fdinfo.FdTypes_PIPE:
		fd, err = planPipeEnd(b, in, e, pipeEnds, safe)
	default:
		err = fmt.Errorf("file id %d: type %v is not supported yet", e.GetId(), e.GetType())
	}
	if err != nil {
		return err
	}
	b.Move(fd, target, cloexec)
	placed[f.GetId()] = target
	return nil
}

func cloexecFlag(on bool) uint64 {
	if on {
		return unix.O_CLOEXEC
	}
	return 0
}

// planReg opens a regular file (or directory or device) at its position.
// A terminal of a --shell-job is amber's own standard input instead.
func planReg(b *plan.Builder, in *RestoreInput, e *fdinfo.FileEntry) (int, error) {
	reg := e.GetReg()
	if isTerminalPath(reg.GetName()) {
		if !in.ShellJob {
			return 0, fmt.Errorf("%s: a terminal needs --shell-job", reg.GetName())
		}
		return planInherit(b, in.AmberPid, 0), nil
	}
	if err := CheckReg(e, in.Stat); err != nil {
		return 0, err
	}
	fd := b.Open("file id "+fmt.Sprint(e.GetId()), reg.GetName(), int(reg.GetFlags()&reopenFlags), 0)
	if pos := reg.GetPos(); pos != 0 {
		b.Call(fmt.Sprintf("seek %s to %d", reg.GetName(), pos), unix.SYS_LSEEK, uint64(fd), pos, unix.SEEK_SET)
	}
	return fd, nil
}

func isTerminalPath(p string) bool {
	return strings.HasPrefix(p, "/dev/pts/") || strings.HasPrefix(p, "/dev/tty") || p == "/dev/console"
}

// planInherit copies descriptor fd of process pid into the task with
// pidfd_getfd, run by the task itself.
func planInherit(b *plan.Builder, pid, fd int) int {
	pidfd := b.Next()
	b.Call(fmt.Sprintf("pidfd_open amber (pid %d)", pid), unix.SYS_PIDFD_OPEN, uint64(pid), 0)
	b.Take()
	got := b.Next()
	b.Call(fmt.Sprintf("take fd %d of amber", fd), unix.SYS_PIDFD_GETFD, uint64(pidfd), uint64(fd), 0)
	b.Take()
	b.Close(pidfd)
	return got
}

// planPipeEnd returns a descriptor for one end of a pipe, creating the
// pipe (and refilling its data) when its first end is met. Both new ends
// are first moved above every target number so that they cannot be
// overwritten while they wait for their own number.
func planPipeEnd(b *plan.Builder, in *RestoreInput, e *fdinfo.FileEntry, ends map[uint32][2]int, safe int) (int, error) {
	p := e.GetPipe()
	id := p.GetPipeId()
	cur, ok := ends[id]
	if !ok {
		r, w := b.Next(), -1
		fdsAddr := b.Bytes(make([]byte, 8))
		b.Call(fmt.Sprintf("create pipe %d", id), unix.SYS_PIPE2, fdsAddr, 0)
		b.Take()
		w = b.Take()
		cur = [2]int{b.MoveAbove(r, safe), b.MoveAbove(w, safe)}
		if data := in.Pipes[id]; len(data) > 0 {
			b.Call(fmt.Sprintf("refill pipe %d with %d bytes", id, len(data)), unix.SYS_WRITE, uint64(cur[1]), b.Bytes(data), uint64(len(data)))
		}
	}
	end := 0
	if p.GetFlags()&unix.O_ACCMODE == unix.O_WRONLY {
		end = 1
	}
	fd := cur[end]
	if fd < 0 {
		return 0, fmt.Errorf("pipe %d: two descriptions of the same end are not supported yet", id)
	}
	if fl := p.GetFlags() & unix.O_NONBLOCK; fl != 0 {
		b.Call(fmt.Sprintf("set O_NONBLOCK on pipe %d", id), unix.SYS_FCNTL, uint64(fd), unix.F_SETFL, uint64(fl))
	}
	cur[end] = -1
	ends[id] = cur
	return fd, nil
}
