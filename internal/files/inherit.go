package files

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
)

// InheritFd is a descriptor of amber's that stands in for a file of the
// images at restore, as CRIU's --inherit-fd fd[N]:KEY and RPC inherit_fd:
// the file KEY names is not made again, the restored tasks get amber's
// descriptor in its place. It is how a caller hands the restored tree a
// pipe or socket whose other end lived outside the dumped tree (a
// container engine's pipes for the container's stdout), or a new file
// for an old one (another log file).
type InheritFd struct {
	Key string // InheritKey of the file
	Fd  int    // amber's descriptor
}

// InheritKey is the key --inherit-fd names file e by, CRIU's: pipe:[ID]
// for a pipe (its inode at dump), socket:[INO] for a unix socket, and
// for a regular file its path without the leading slash (tmp/log; "."
// for the root). Other kinds of file have no key (""), and are never
// inherited.
func InheritKey(e *fdinfo.FileEntry) string {
	switch e.GetType() {
	case fdinfo.FdTypes_PIPE:
		return fmt.Sprintf("pipe:[%d]", e.GetPipe().GetPipeId())
	case fdinfo.FdTypes_UNIXSK:
		return fmt.Sprintf("socket:[%d]", e.GetUsk().GetIno())
	case fdinfo.FdTypes_REG:
		if name := strings.TrimPrefix(e.GetReg().GetName(), "/"); name != "" {
			return name
		}
		return "."
	}
	return ""
}

// UnusedInheritKeys lists the keys of inherit that name no file of idx,
// sorted: CRIU ignores them, and amber says so in its log.
func UnusedInheritKeys(inherit map[string]int, idx Index) []string {
	// Only the keys asked for are remembered: the images may hold tens of
	// thousands of files, and most restores pass no --inherit-fd.
	used := map[string]bool{}
	for _, e := range idx {
		if len(used) == len(inherit) {
			break
		}
		if k := InheritKey(e); k != "" {
			if _, ok := inherit[k]; ok {
				used[k] = true
			}
		}
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(inherit)) {
		if !used[k] {
			out = append(out, k)
		}
	}
	return out
}

// inherited returns amber's descriptor standing in for file e, if
// --inherit-fd names it.
func (p *fdPlanner) inherited(e *fdinfo.FileEntry) (int, bool) {
	if len(p.in.Inherit) == 0 {
		return 0, false
	}
	fd, ok := p.in.Inherit[InheritKey(e)]
	return fd, ok
}

// makeInherited plans taking amber's descriptor amberFd for file e. A
// regular file or a socket is that very open file, as CRIU gives it; a
// pipe is opened again through /proc/self/fd with the flags of e, as
// CRIU does, so that each file of the pipe keeps its own access mode
// and flags whichever end amber holds. Nothing of the dumped file is
// restored: not a pipe's data, nor a file's position.
func (p *fdPlanner) makeInherited(e *fdinfo.FileEntry, amberFd int) (int, error) {
	what := fmt.Sprintf("file id %d (%s), --inherit-fd from amber's fd %d", e.GetId(), InheritKey(e), amberFd)
	fd, err := p.takeFromAmber(amberFd, what)
	if err != nil || e.GetType() != fdinfo.FdTypes_PIPE {
		return fd, err
	}
	flags := int(e.GetPipe().GetFlags() & pipeReopenFlags)
	mine := p.b.Open(what+", opened again with its flags", fmt.Sprintf("/proc/self/fd/%d", fd), flags, 0)
	p.b.Close(fd)
	return mine, nil
}

// takeFromAmber plans taking descriptor fd of amber's into the task:
// through the pidfd of amber the task holds (AmberPidfd), else by
// amber's PID, which a task in a pid namespace of its own cannot name.
func (p *fdPlanner) takeFromAmber(fd int, what string) (int, error) {
	if p.amberPidfd > 0 {
		return planTakeVia(p.b, p.amberPidfd, fd, what), nil
	}
	if p.in.AmberHidden {
		return 0, fmt.Errorf("%s: only the root of a new pid namespace can take a file from amber, and it does not hold this one: not supported yet", what)
	}
	return planTake(p.b, p.in.AmberPid, fd, what), nil
}

// keepAmberPidfd moves the pidfd of amber the task holds, if any, above
// every target number, where placing descriptors cannot replace it.
func (p *fdPlanner) keepAmberPidfd() {
	if p.in.AmberPidfd > 0 {
		p.amberPidfd = p.b.MoveAbove(p.in.AmberPidfd, p.safe)
	}
}

// dropAmberPidfd closes the pidfd of amber once every file is in place.
func (p *fdPlanner) dropAmberPidfd() {
	if p.amberPidfd > 0 {
		p.b.Close(p.amberPidfd)
		p.amberPidfd = 0
	}
}
