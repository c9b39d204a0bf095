package files

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/regfile"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
	"amber/internal/sockets"
)

// RestoreInput is what planning a descriptor table needs.
type RestoreInput struct {
	Fds   []*fdinfo.FdinfoEntry
	Files Index
	Pipes map[uint32][]byte // pipes-data by pipe id
	// PipeSizes are the pipes' capacities by pipe id (0 or none: the
	// default).
	PipeSizes map[uint32]uint32
	ShellJob  bool
	// ExtUnixSk connects sockets to the external sockets of the images
	// by name (--ext-unix-sk); without it they are refused.
	ExtUnixSk bool
	// AmberPid is amber's own PID: with --shell-job the task takes its
	// terminal from amber's standard input through pidfd_getfd. In a
	// user namespace of the tree's own it is the restore stub's, which
	// holds copies of amber's descriptors the tasks take (every number
	// of amber's below is then the stub's).
	AmberPid int
	// Stdin is amber's standard input (0), its terminal with --shell-job.
	Stdin int
	// Stat looks files up as they are now (os.Stat outside tests).
	Stat func(path string) (os.FileInfo, error)
	// Lstat looks symbolic links up themselves, where Stat does (nil:
	// os.Lstat).
	Lstat func(path string) (os.FileInfo, error)
	// Inherited are the descriptors the task starts with, by number, and
	// the file id each holds: its restored parent's table (parked pipe
	// ends included). Empty for a task forked from the stub.
	Inherited map[int]uint32
	// Shared finds a file that a task restored earlier already holds, so
	// that this task shares its open file description instead of opening
	// another.
	Shared func(fileID uint32) (Holder, bool)
	// Extra is what other images say of the files: FIFO data, socket
	// queues, unlinked files, modification times (nil: none).
	Extra *Extra
	// HostGhosts are the paths of the unlinked files amber made before
	// any task ran, by ghost id (PlanHostGhosts): the task opens them
	// there, and neither makes nor removes them.
	HostGhosts map[uint32]string
	// SkipFileCheck restores regular files that changed since the dump
	// (--skip-file-check).
	SkipFileCheck bool
	// Warnf reports what is restored with a warning (nil: nowhere).
	Warnf func(format string, args ...any)
	// Memfds is the task's memfd planner, which its memory plan may have
	// used already (nil: the task has no memfd).
	Memfds *Memfds
	// Ttys are the terminals amber made, by TTY file id: the task takes
	// each from amber (nil: none).
	Ttys map[uint32]TtyFd
	// TCPEstablished restores established TCP connections
	// (--tcp-established); without it they are refused.
	TCPEstablished bool
	// TCPClose restores TCP connections closed (--tcp-close), whatever
	// the images hold of them.
	TCPClose bool
	// TreePid tells the PIDs and TIDs of the restored tree (nil: none):
	// files under /proc/PID of those are opened late (LateFile).
	TreePid func(pid int) bool
	// DeadPidfds are amber's pidfds standing for those of dead processes,
	// by file id: the task takes each from amber (nil: none).
	DeadPidfds map[uint32]int
	// Lone reports that no other descriptor table of the tree has the
	// file: a copy the task parked of it is closed as soon as it is at
	// its number, instead of at the end (nil: every file may be shared).
	Lone func(fileID uint32) bool
	// Inherit are amber's descriptors standing in for files of the
	// images, by InheritKey (--inherit-fd; nil: none).
	Inherit map[string]int
	// AmberPidfd is a pidfd of amber's process the task holds when its
	// plan starts (0: none; never 0-2, the stub's /dev/null): the task
	// takes amber's descriptors through it, and closes it once its files
	// are in place. The root gets one from the stub when it may need it
	// in a pid namespace where amber has no PID.
	AmberPidfd int
	// NsIDs are the task's namespace ids (ids-PID.img), for its
	// namespace files (nil: none known).
	NsIDs *criucore.TaskKobjIdsEntry
	// NetnsPid names a task of the tree in network namespace id of the
	// images, by the PID the task sees, once the namespace is made: the
	// task makes a socket of another namespace than its own there (nil:
	// every socket in its own).
	NetnsPid func(id uint32) (int, bool)
	// HostNs are amber's descriptors of its own namespaces, by their id
	// in the images, for the namespace files of the dumper's namespaces
	// (nil: none).
	HostNs map[uint32]int
	// AmberHidden says the task is in a pid namespace where amber's PID
	// names no process (or another one): without AmberPidfd it cannot
	// take an inherited file from amber.
	AmberHidden bool
	// TreeProc is the path of the tree's own /proc while the task sees
	// amber's there (a mount namespace of its own): its late files under
	// /proc/PID are opened under it ("": the /proc it sees is its own).
	TreeProc string
	// MountRoot names the root of the mount namespace of mount mntID
	// (a file's dumped mnt_id) as both amber and the task reach it, when
	// it is not the task's own namespace: the task opens the file there,
	// on that namespace's mount. "" (or nil): the task's own.
	MountRoot func(mntID int32) string
}

// Holder is a restored task holding a file at a descriptor.
type Holder struct{ Pid, Fd int }

// Restored is what PlanFds leaves in the task.
type Restored struct {
	// Held maps each file id the task holds to one descriptor of it,
	// for Shared lookups of tasks restored later.
	Held map[uint32]int
	// Parked are pipe ends the task keeps for other tasks, by descriptor,
	// with the file id of each; they are closed once every task has taken
	// its own (ClosePlan).
	Parked map[int]uint32
	// TCP are the TCP sockets the task holds that amber finishes once
	// every task is restored (sockets.EndTCPRepair, sockets.CloseTCP).
	TCP sockets.TCPLeft
	// owned are the descriptors whose files have an owner, a signal or
	// O_ASYNC to set again (PlanOwners).
	owned []ownedFd
	// Late are the files under /proc/PID of a task of the tree, opened
	// only once every task exists (PlanLate).
	Late []LateFile
	// ProcDir is the descriptor of the tree's own /proc (TreeProc) the
	// task holds from its files plan to its final section, where Late
	// files are opened under it (0: none).
	ProcDir int
}

// reopenFlags are the open flags that make sense to pass again; creation
// and truncation flags must never be replayed.
const reopenFlags = unix.O_ACCMODE | unix.O_APPEND | unix.O_NONBLOCK | unix.O_DIRECT |
	unix.O_NOATIME | unix.O_SYNC | unix.O_DSYNC | unix.O_DIRECTORY | unix.O_PATH | unix.O_LARGEFILE | unix.O_NOFOLLOW

// CheckReg verifies that a regular file is still what was dumped: it
// exists and, for a regular file, has the same size.
func CheckReg(e *fdinfo.FileEntry, stat func(string) (os.FileInfo, error)) error {
	reg := e.GetReg()
	st, err := stat(reg.GetName())
	if err != nil {
		return fmt.Errorf("file %s (id %d) is gone since the dump: %w", reg.GetName(), e.GetId(), err)
	}
	if reg.Size != nil && st.Mode().IsRegular() && uint64(st.Size()) != reg.GetSize() {
		return fmt.Errorf("file %s (id %d) changed since the dump: size %d, was %d (--skip-file-check restores anyway)",
			reg.GetName(), e.GetId(), st.Size(), reg.GetSize())
	}
	return nil
}

// PlanFds plans recreating the descriptor table: afterwards the task has
// exactly the dumped descriptors, with their numbers, flags and positions,
// plus the parked pipe ends listed in the returned Restored. Files the task
// shares with its parent come from the inherited descriptors, those it
// shares with another task restored earlier through pidfd_getfd.
func PlanFds(b *plan.Builder, in *RestoreInput) (*Restored, error) {
	fds := slices.Clone(in.Fds)
	slices.SortFunc(fds, func(a, c *fdinfo.FdinfoEntry) int { return int(a.GetFd()) - int(c.GetFd()) })
	safe := SafeFd(fds, in.Inherited)
	p := &fdPlanner{b: b, in: in, safe: safe, have: keepInherited(b, in, fds, safe),
		placed: map[uint32]int{}, table: &Restored{Held: map[uint32]int{}}}
	p.keepAmberPidfd()
	p.takeTerminals()
	for _, f := range fds {
		if err := p.place(f); err != nil {
			return nil, fmt.Errorf("fd %d: %w", f.GetFd(), err)
		}
	}
	if err := p.runDeferred(); err != nil {
		return nil, err
	}
	if p.sockets != nil {
		p.table.TCP = p.sockets.TCP()
	}
	p.dropAmberPidfd()
	p.table.owned = p.owned(fds)
	p.closeSpare()
	return p.table, nil
}

// SafeFd is the lowest descriptor number above every target of fds and
// every inherited one: what a plan keeps open for later (pipe ends for
// other tasks, memfd handles) is parked from there.
func SafeFd(fds []*fdinfo.FdinfoEntry, inherited map[int]uint32) int {
	safe := 0
	for _, f := range fds {
		safe = max(safe, int(f.GetFd())+1)
	}
	for fd := range inherited {
		safe = max(safe, fd+1)
	}
	return safe
}

// fdPlanner carries the state of one PlanFds.
type fdPlanner struct {
	b      *plan.Builder
	in     *RestoreInput
	safe   int
	have   map[uint32]int // file id -> a spare descriptor above safe
	placed map[uint32]int // file id -> target descriptor made
	parked map[int]bool
	table  *Restored
	// deferred is work that needs every descriptor at its number (see
	// deferToEnd), run once all are placed.
	deferred []func() error
	pipes    map[uint32][]*fdinfo.FileEntry // ends of each pipe (pipeEnds)
	// sockets makes the task's sockets, from the first (socketPlan).
	sockets   *sockets.Plan
	fifoFirst map[uint32]uint32 // the first file id of each FIFO (fifoRefiller)
	// amberPidfd is where the task holds AmberPidfd during the plan (0:
	// it holds none).
	amberPidfd int
}

// keepInherited moves the inherited descriptors the task needs above
// every target number and closes all others.
func keepInherited(b *plan.Builder, in *RestoreInput, fds []*fdinfo.FdinfoEntry, safe int) map[uint32]int {
	have := map[uint32]int{}
	if len(in.Inherited) == 0 {
		return have
	}
	need := map[uint32]bool{}
	for _, f := range fds {
		need[f.GetId()] = true
	}
	for _, fd := range sortedKeys(in.Inherited) {
		id := in.Inherited[fd]
		if _, dup := have[id]; need[id] && !dup {
			have[id] = b.CopyAbove(fd, safe)
		}
	}
	b.CloseRange(0, safe-1)
	return have
}

func sortedKeys(m map[int]uint32) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// place makes one target descriptor.
func (p *fdPlanner) place(f *fdinfo.FdinfoEntry) error {
	target, cloexec := int(f.GetFd()), f.GetFlags()&unix.FD_CLOEXEC != 0
	id := f.GetId()
	if fd, ok := p.placed[id]; ok {
		p.dup(fd, target, cloexec, "another descriptor of the same file")
		return nil
	}
	if fd, ok := p.have[id]; ok {
		p.dup(fd, target, cloexec, "inherited from the parent")
		p.placed[id] = target
		p.table.Held[id] = target
		p.unpark(id, fd)
		return nil
	}
	if p.placeLate(f) {
		return nil
	}
	fd, err := p.make(id)
	if err != nil {
		return err
	}
	p.b.Move(fd, target, cloexec)
	p.placed[id] = target
	p.table.Held[id] = target
	return nil
}

func (p *fdPlanner) dup(from, to int, cloexec bool, why string) {
	p.b.Call(fmt.Sprintf("dup fd %d to %d (%s)", from, to, why), unix.SYS_DUP3, uint64(from), uint64(to), cloexecFlag(cloexec))
	p.b.Mark(to)
}

// make creates file id in the task, or takes it from the task already
// holding it, and returns a descriptor of it.
func (p *fdPlanner) make(id uint32) (int, error) {
	if p.in.Shared != nil {
		if h, ok := p.in.Shared(id); ok {
			return planTake(p.b, h.Pid, h.Fd, fmt.Sprintf("file id %d", id)), nil
		}
	}
	e, ok := p.in.Files[id]
	if !ok {
		return 0, fmt.Errorf("files.img has no file with id %d", id)
	}
	if fd, ok := p.inherited(e); ok {
		return p.makeInherited(e, fd)
	}
	switch e.GetType() {
	case fdinfo.FdTypes_REG:
		if g := p.in.extra().Ghosts[id]; g != nil {
			return p.makeGhost(e, g)
		}
		if lid, ok := p.in.extra().Links[id]; ok {
			return p.makeLinked(e, lid)
		}
		if p.in.extra().deadProc(e.GetReg().GetName()) {
			return p.makeDeadProc(e), nil
		}
		return p.planReg(e)
	case fdinfo.FdTypes_PIPE:
		return p.makePipe(e)
	case fdinfo.FdTypes_UNIXSK:
		return p.socketPlan().MakeUnix(e)
	case fdinfo.FdTypes_INETSK:
		return p.socketPlan().MakeInet(e)
	case fdinfo.FdTypes_PACKETSK:
		return p.socketPlan().MakePacket(e)
	case fdinfo.FdTypes_NETLINKSK:
		return p.socketPlan().MakeNetlink(e)
	case fdinfo.FdTypes_FIFO:
		return p.makeFifo(e)
	case fdinfo.FdTypes_EVENTFD:
		return p.makeEventfd(e)
	case fdinfo.FdTypes_EVENTPOLL:
		return p.makeEventpoll(e)
	case fdinfo.FdTypes_SIGNALFD:
		return p.makeSignalfd(e)
	case fdinfo.FdTypes_TIMERFD:
		return p.makeTimerfd(e)
	case fdinfo.FdTypes_INOTIFY:
		return p.makeInotify(e)
	case fdinfo.FdTypes_FANOTIFY:
		return p.makeFanotify(e)
	case fdinfo.FdTypes_TTY:
		return p.makeTty(e)
	case fdinfo.FdTypes_PIDFD:
		return p.makePidfd(e)
	case fdinfo.FdTypes_NS:
		return p.makeNsFile(e)
	case fdinfo.FdTypes_MEMFD:
		if p.in.Memfds == nil {
			return 0, fmt.Errorf("file id %d: a memfd, and no memfd planner", id)
		}
		return p.in.Memfds.Open(p.b, e)
	}
	return 0, fmt.Errorf("file id %d: type %v is not supported yet", id, e.GetType())
}

// closeSpare closes the inherited copies above safe; parked pipe ends
// stay for other tasks.
func (p *fdPlanner) closeSpare() {
	for _, id := range slices.Sorted(maps.Keys(p.have)) {
		if fd := p.have[id]; !p.parked[fd] {
			p.b.Close(fd)
		}
	}
}

func cloexecFlag(on bool) uint64 {
	if on {
		return unix.O_CLOEXEC
	}
	return 0
}

// planReg opens a regular file (or directory or device) at its position.
// A terminal of a --shell-job is amber's own standard input instead.
func (p *fdPlanner) planReg(e *fdinfo.FileEntry) (int, error) {
	b, in, reg := p.b, p.in, e.GetReg()
	// A console a dump without --shell-job took is opened again.
	if isTerminalPath(reg.GetName()) && (in.ShellJob || reg.GetName() != "/dev/console") {
		if !in.ShellJob {
			return 0, fmt.Errorf("%s: a terminal needs --shell-job", reg.GetName())
		}
		return p.takeFromAmber(p.in.Stdin, "amber's terminal")
	}
	check, name := in.fileCheck(), reg.GetName()
	if in.MountRoot != nil && reg.MntId != nil {
		if root := in.MountRoot(reg.GetMntId()); root != "" {
			check.Stat = func(p string) (os.FileInfo, error) { return os.Stat(root + p) }
			name = root + name
		}
	}
	if err := check.Reg(e); err != nil {
		return 0, err
	}
	fd := b.Open("file id "+fmt.Sprint(e.GetId()), name, openFlags(reg), 0)
	if pos := reg.GetPos(); pos != 0 {
		b.Call(fmt.Sprintf("seek %s to %d", reg.GetName(), pos), unix.SYS_LSEEK, uint64(fd), pos, unix.SEEK_SET)
	}
	return fd, nil
}

// openFlags are the flags to open reg again with. A file made with
// O_TMPFILE keeps __O_TMPFILE and O_DIRECTORY (part of O_TMPFILE) in its
// flags although it is a regular file: reopening it with O_DIRECTORY
// would fail with ENOTDIR, so that bit is dropped from whatever is not
// a directory.
func openFlags(reg *regfile.RegFileEntry) int {
	flags := reg.GetFlags() & reopenFlags
	if reg.Mode != nil && reg.GetMode()&unix.S_IFMT != unix.S_IFDIR {
		flags &^= unix.O_DIRECTORY
	}
	return int(flags)
}

func isTerminalPath(p string) bool {
	return strings.HasPrefix(p, "/dev/pts/") || strings.HasPrefix(p, "/dev/tty") || p == "/dev/console" || p == "/dev/ptmx"
}

// planTake copies descriptor fd of process pid into the task with
// pidfd_getfd, run by the task itself: the task then shares that open
// file description.
func planTake(b *plan.Builder, pid, fd int, what string) int {
	pidfd := b.Next()
	b.Call(fmt.Sprintf("pidfd_open pid %d", pid), unix.SYS_PIDFD_OPEN, uint64(pid), 0)
	b.Take()
	got := planTakeVia(b, pidfd, fd, fmt.Sprintf("%s, of pid %d", what, pid))
	b.Close(pidfd)
	return got
}

// planTakeVia is planTake through pidfd, a pidfd the task holds.
func planTakeVia(b *plan.Builder, pidfd, fd int, what string) int {
	got := b.Next()
	b.Call(fmt.Sprintf("take fd %d (%s)", fd, what), unix.SYS_PIDFD_GETFD, uint64(pidfd), uint64(fd), 0)
	b.Take()
	// pidfd_getfd always sets FD_CLOEXEC; the caller sets the wanted flag.
	b.Call(fmt.Sprintf("clear FD_CLOEXEC on fd %d", got), unix.SYS_FCNTL, uint64(got), unix.F_SETFD, 0)
	return got
}

// park keeps fd open as file id for other tasks.
func (p *fdPlanner) park(id uint32, fd int) {
	if p.parked == nil {
		p.parked = map[int]bool{}
		p.table.Parked = map[int]uint32{}
	}
	if !p.parked[fd] {
		p.parked[fd] = true
		p.table.Parked[fd] = id
	}
	if _, ok := p.table.Held[id]; !ok {
		p.table.Held[id] = fd
	}
	p.have[id] = fd
}

// unpark closes the copy of file id parked at fd once the task has the
// file at its number, if no other task needs the copy: a process with
// thousands of pipes would otherwise hold one parked end of each at once,
// above its highest descriptor, and run out of descriptors.
func (p *fdPlanner) unpark(id uint32, fd int) {
	if !p.parked[fd] || p.in.Lone == nil || !p.in.Lone(id) {
		return
	}
	p.b.Close(fd)
	delete(p.parked, fd)
	delete(p.table.Parked, fd)
	delete(p.have, id)
}

// ClosePlan plans closing parked pipe ends once every task took its own.
func ClosePlan(b *plan.Builder, t *Restored) {
	for _, fd := range slices.Sorted(maps.Keys(t.Parked)) {
		b.Close(fd)
	}
}
