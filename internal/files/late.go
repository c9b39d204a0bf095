package files

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// Files under /proc/PID of a task of the dumped tree (a parent holding
// /proc/CHILD/stat, say) cannot be opened when their task's descriptors
// are restored: a task's files are made before its children are forked,
// and a thread's /proc entry is there only once it is cloned. CRIU opens
// them once the whole tree exists; amber too: such a file is opened in
// the task's final section, which runs when every task of the tree is in
// place, and its number holds a placeholder until then. It is not checked
// against the dump either: a /proc file's size says nothing.
//
// The path is the one the task saw, in the procfs of its pid namespace.
// A tree restored in a mount namespace of its own sees amber's /proc
// there until the restore ends (mounts.Restore), where its PIDs name
// other processes or none: the task then opens the tree's own /proc
// (RestoreInput.TreeProc) in its files plan, while it still may reach
// amber's descriptors, keeps it until the final section, and opens the
// late files under it there, then closes it.

// Pidfds of tasks of the tree wait for the final section likewise
// (pidfd.go).

// LateFile is a descriptor opened in the task's final section.
type LateFile struct {
	Fd      int
	Cloexec bool
	Entry   *fdinfo.FileEntry
	// Dup is an earlier LateFile's descriptor of the same file to
	// duplicate, or -1.
	Dup int
}

// treeProcPid is the PID of a task of the tree that path is under
// (/proc/PID or /proc/PID/...), or 0.
func treeProcPid(path string, inTree func(pid int) bool) int {
	rest, ok := strings.CutPrefix(path, "/proc/")
	if !ok || inTree == nil {
		return 0
	}
	first, _, _ := strings.Cut(rest, "/")
	pid, err := strconv.Atoi(first)
	if err != nil || pid <= 0 || !inTree(pid) {
		return 0
	}
	return pid
}

// placeLate keeps target free for file e, a file under /proc/PID of the
// tree or /dev/tty (tty_ctty.go), to be opened in the final section; it
// tells whether e is one.
func (p *fdPlanner) placeLate(f *fdinfo.FdinfoEntry) bool {
	e, ok := p.in.Files[f.GetId()]
	if !ok || !(isLate(e, p.in.TreePid) || isCttyDevice(e, p.in.ShellJob)) {
		return false
	}
	l := LateFile{Fd: int(f.GetFd()), Cloexec: f.GetFlags()&unix.FD_CLOEXEC != 0, Entry: e, Dup: -1}
	for _, o := range p.table.Late {
		if o.Entry.GetId() == e.GetId() && o.Dup < 0 {
			l.Dup = o.Fd
			break
		}
	}
	if e.GetType() == fdinfo.FdTypes_REG {
		p.procDir()
	}
	// The number must be taken for real: later calls get the lowest free
	// descriptor, as the plan predicts them.
	fd := p.b.Open("a placeholder until the tree exists", "/", unix.O_PATH|unix.O_CLOEXEC, 0)
	p.b.Move(fd, l.Fd, false)
	p.table.Late = append(p.table.Late, l)
	return true
}

// PlanLate plans opening the late files of t (nil: none) at their
// numbers, in the final section.
func PlanLate(b *plan.Builder, t *Restored) {
	if t == nil {
		return
	}
	for _, l := range t.Late {
		if l.Dup >= 0 {
			b.Call(fmt.Sprintf("dup fd %d to %d (another descriptor of the same file)", l.Dup, l.Fd), unix.SYS_DUP3,
				uint64(l.Dup), uint64(l.Fd), cloexecFlag(l.Cloexec))
			continue
		}
		var fd int
		if l.Entry.GetType() == fdinfo.FdTypes_PIDFD {
			fd = planLivePidfd(b, l.Entry)
		} else {
			fd = planLateProc(b, l.Entry, t.ProcDir)
		}
		b.Move(fd, l.Fd, l.Cloexec)
	}
	if t.ProcDir > 0 {
		b.Close(t.ProcDir)
	}
}

// isLate tells a file opened in the final section: one under /proc/PID
// of a task of the tree, or a pidfd of one (pidfd.go).
func isLate(e *fdinfo.FileEntry, inTree func(pid int) bool) bool {
	switch e.GetType() {
	case fdinfo.FdTypes_REG:
		return treeProcPid(e.GetReg().GetName(), inTree) != 0
	case fdinfo.FdTypes_PIDFD:
		return livePidfd(e, inTree)
	}
	return false
}

// planLateProc opens e, a file under /proc/PID, at its position: under
// procDir, the tree's own /proc the task holds, if not 0.
func planLateProc(b *plan.Builder, e *fdinfo.FileEntry, procDir int) int {
	reg := e.GetReg()
	what := fmt.Sprintf("file id %d, of a task of the tree", e.GetId())
	var fd int
	if procDir > 0 {
		fd = b.OpenAt(what, procDir, strings.TrimPrefix(reg.GetName(), "/proc/"), openFlags(reg), 0)
	} else {
		fd = b.Open(what, reg.GetName(), openFlags(reg), 0)
	}
	if pos := reg.GetPos(); pos != 0 {
		b.Call(fmt.Sprintf("seek %s to %d", reg.GetName(), pos), unix.SYS_LSEEK, uint64(fd), pos, unix.SEEK_SET)
	}
	return fd
}

// IsLate tells a descriptor that t opens only in its final section.
func (t *Restored) IsLate(fd int) bool {
	for _, l := range t.Late {
		if l.Fd == fd {
			return true
		}
	}
	return false
}
