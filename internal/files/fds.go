package files

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/proc"
)

// DumpOptions are the user's settings that change what may be dumped.
type DumpOptions struct {
	ShellJob bool // the task may hold its terminal; restore gives it amber's
}

// Dumped is what DumpFds collected.
type Dumped struct {
	Fds   []*fdinfo.FdinfoEntry
	Pipes []PipeData
}

// DumpFds records every descriptor of pid into t.
func DumpFds(pid int, t *Table, opts DumpOptions) (*Dumped, error) {
	fds, err := proc.Fds(pid)
	if err != nil {
		return nil, err
	}
	d := &Dumped{}
	seen := map[int]uint32{} // fd -> file id, to find dup'ed descriptors
	pipes := map[uint64]bool{}
	for _, fd := range fds {
		e, err := dumpFd(pid, fd, t, seen, pipes, d, opts)
		if err != nil {
			return nil, fmt.Errorf("pid %d fd %d: %w", pid, fd, err)
		}
		d.Fds = append(d.Fds, e)
	}
	return d, nil
}

func dumpFd(pid, fd int, t *Table, seen map[int]uint32, pipes map[uint64]bool, d *Dumped, opts DumpOptions) (*fdinfo.FdinfoEntry, error) {
	link, err := proc.FdPath(pid, fd)
	if err != nil {
		return nil, err
	}
	info, err := proc.ReadFdinfo(pid, fd)
	if err != nil {
		return nil, err
	}
	fdFlags := uint32(0)
	if info.Flags&unix.O_CLOEXEC != 0 {
		fdFlags = unix.FD_CLOEXEC
	}
	e := &fdinfo.FdinfoEntry{Flags: proto.Uint32(fdFlags), Fd: proto.Uint32(uint32(fd))}
	if id, typ, ok := sameFile(pid, fd, seen, t); ok {
		e.Id, e.Type = proto.Uint32(id), typ.Enum()
		seen[fd] = id
		return e, nil
	}
	st, err := os.Stat(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
	if err != nil {
		return nil, err
	}
	flags := info.Flags &^ unix.O_CLOEXEC
	var id uint32
	var typ fdinfo.FdTypes
	switch {
	case strings.HasPrefix(link, "pipe:["):
		id, err = t.addPipe(st, flags)
		typ = fdinfo.FdTypes_PIPE
		if err == nil && !pipes[inode(st)] {
			pipes[inode(st)] = true
			var pd PipeData
			pd, err = readPipeData(pid, fd, inode(st))
			if len(pd.Data) > 0 {
				d.Pipes = append(d.Pipes, pd)
			}
		}
	case strings.HasSuffix(link, " (deleted)"):
		err = fmt.Errorf("%s: unlinked open files are not supported yet", link)
	case st.Mode()&os.ModeSocket != 0, st.Mode()&os.ModeNamedPipe != 0, !strings.HasPrefix(link, "/"):
		err = fmt.Errorf("%s: this kind of file is not supported yet", link)
	case isTerminal(st):
		if !opts.ShellJob {
			err = fmt.Errorf("%s: a terminal needs --shell-job", link)
		}
		id, typ = t.addReg(link, flags, 0, st), fdinfo.FdTypes_REG
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		err = fmt.Errorf("%s: block devices are not supported", link)
	default:
		id, typ = t.addReg(link, flags, uint64(info.Pos), st), fdinfo.FdTypes_REG
	}
	if err != nil {
		return nil, err
	}
	seen[fd] = id
	e.Id, e.Type = proto.Uint32(id), typ.Enum()
	return e, nil
}

// sameFile finds an earlier descriptor of pid that shares fd's open file
// description (dup, dup2), which must be restored as one file.
func sameFile(pid, fd int, seen map[int]uint32, t *Table) (uint32, fdinfo.FdTypes, bool) {
	for other, id := range seen {
		r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(pid), kcmpFile, uintptr(other), uintptr(fd), 0)
		if e == 0 && r == 0 {
			return id, t.entries[id-1].GetType(), true
		}
	}
	return 0, 0, false
}

func inode(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino
	}
	return 0
}

// isTerminal tells a tty: pseudo terminals (major 136-143), virtual
// consoles and serial lines (4), /dev/tty and /dev/ptmx (5).
func isTerminal(st os.FileInfo) bool {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	major := unix.Major(s.Rdev)
	return major == 4 || major == 5 || (major >= 136 && major <= 143)
}

// kcmpFile is KCMP_FILE of linux/kcmp.h.
const kcmpFile = 0
