package files

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fown"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/idmap"
	"amber/internal/proc"
	"amber/internal/sockets"
)

// DumpOptions are the user's settings that change what may be dumped.
type DumpOptions struct {
	ShellJob bool // the task may hold its terminal; restore gives it amber's
	// GhostLimit is the largest unlinked file kept, in bytes on disk
	// (--ghost-limit; DefaultGhostLimit unless the user said otherwise).
	GhostLimit int64
	// LinkRemap lets a file removed from its path but still linked
	// elsewhere be dumped through a hard link the dump makes next to it
	// (--link-remap, linkremap.go); without it such a file is refused.
	LinkRemap bool
	// ShmemDev is the device of the kernel's internal shmem mount
	// (kerndat.ShmemDev), where memfds live; 0 refuses memfds.
	ShmemDev uint64
	// TCPEstablished dumps established TCP connections in repair mode
	// (--tcp-established); without it they refuse the dump.
	TCPEstablished bool
	// TCPClose dumps TCP connections without their state (--tcp-close):
	// they are restored closed.
	TCPClose bool
	// TCPSkipInFlight leaves out connections waiting to be accepted
	// (--tcp-skip-in-flight); without it their listener is refused.
	TCPSkipInFlight bool
	// FileLocks dumps the file locks the tree holds (--file-locks);
	// without it a process holding one is refused.
	FileLocks bool
	// ExtUnixSk records a datagram socket outside the tree that a socket
	// of the tree is connected to, as criu's --ext-unix-sk does; without
	// it such a socket is refused.
	ExtUnixSk bool
	// OrphanPtsMaster lets one pty slave of the tree have its master
	// outside it (a container's terminal): tty-info.img records the
	// slave, and the restore makes a new pty whose master it hands over.
	OrphanPtsMaster bool
	// Warnf reports what the dump loses without failing (nil: nothing).
	Warnf func(format string, args ...any)
}

// Dumper collects the open files of every process of a dump into one
// files.img, so that a file several processes share is one entry.
type Dumper struct {
	Table *Table
	opts  DumpOptions
	known map[fileKey][]knownFd // descriptors seen, by file identity
	pipes map[uint64]bool       // pipes whose data is saved
	Pipes []PipeData            // data in flight, for pipes-data.img

	sockets  *sockets.Dumper // sockets (package sockets), for Finish and ReleaseSockets
	fifoSeen map[uint64]bool // FIFOs whose data is saved, by inode
	fifos    []FifoData      // data in FIFOs, for fifo-data.img
	ghosts   *ghostState     // unlinked files (ghost.go), for Finish
	memfd    *memfdState     // memfds (memfd.go)
	// pidOf translates amber's PIDs into the images' (SetPidMap); nil:
	// the same.
	pidOf func(pid int) int
	ttys  *ttyDump // sides of ptys (tty.go), for Finish
	// inFlight are amber's copies of the descriptors in flight on unix
	// sockets (sockets.go), open until ReleaseSockets; inFlightOwner is
	// the task whose socket queue holds those being dumped, 0 when none
	// is (watchOwner).
	inFlight      []int
	inFlightOwner int

	// InTree tells the PIDs and TIDs of the dumped tree (nil: none), to
	// which a pidfd may point.
	InTree func(pid int) bool
	// ShmemAsMemfd tells the objects of anonymous shared memory, by
	// inode number, whose mappings are dumped as memfd mappings
	// (mem.Backing's): a descriptor of one is a memfd too (nil: none).
	ShmemAsMemfd func(ino uint64) bool

	locks *lockDump // file locks (locks.go), for Finish
	// procLocks is /proc/locks as read by ReadLocksAhead, for
	// CheckLocks (nil: read it then).
	procLocks <-chan lockTable
	// users are the maps of the tree's own user namespace (SetUserMaps;
	// nil: none).
	users *idmap.Pair
	// nsIDs finds the namespaces that namespace files point to
	// (SetNsLookup; nil: none is known).
	nsIDs NsLookup
	// cttyUsers are the descriptors of /dev/tty taken without
	// --shell-job (tty_ctty.go), checked in Finish.
	cttyUsers []cttyUser
}

// fileKey is what a file description's file is: device and inode.
type fileKey struct{ dev, ino uint64 }

type knownFd struct {
	pid, fd int
	id      uint32
}

// NewDumper returns a dumper writing into t.
func NewDumper(t *Table, opts DumpOptions) *Dumper {
	d := &Dumper{Table: t, opts: opts, known: map[fileKey][]knownFd{}, pipes: map[uint64]bool{}}
	d.sockets = sockets.NewDumper(socketFiles{d}, sockets.DumpOptions{TCPEstablished: opts.TCPEstablished,
		TCPClose: opts.TCPClose, ExtUnixSk: opts.ExtUnixSk, Warnf: opts.Warnf, TCPSkipInFlight: opts.TCPSkipInFlight})
	return d
}

// PacketID is the file id of the packet socket of inode ino, once a
// descriptor of it is dumped (sockets.Dumper.PacketID).
func (d *Dumper) PacketID(ino uint32) (uint32, bool) { return d.sockets.PacketID(ino) }

// DumpFds records every descriptor of pid but the hidden ones (amber's
// own, placed there for the dump) and returns its fdinfo entries.
func (d *Dumper) DumpFds(pid int, hidden ...int) ([]*fdinfo.FdinfoEntry, error) {
	fds, err := proc.Fds(pid)
	if err != nil {
		return nil, err
	}
	fds = slices.DeleteFunc(fds, func(fd int) bool { return slices.Contains(hidden, fd) })
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pid %d: pidfd_open: %w", pid, err)
	}
	defer unix.Close(pidfd)
	facts, err := gatherFds(pid, pidfd, fds)
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	var out []*fdinfo.FdinfoEntry
	for _, f := range facts {
		known := d.Table.nextID()
		e, err := d.dumpFd(pid, f)
		if err == nil && e.GetId() >= known {
			err = d.dumpFown(pidfd, f.fd, e.GetId(), f.owner) // a file met for the first time
		}
		if err == nil {
			err = d.noteLocks(pid, f.fd, e.GetId(), f.link, f.info)
		}
		if err != nil {
			return nil, fmt.Errorf("pid %d fd %d: %w", pid, f.fd, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// fdFacts is what /proc tells of one descriptor: its link, its fdinfo
// and what it refers to, or why they could not be read.
type fdFacts struct {
	fd   int
	link string
	info proc.FdInfo
	st   os.FileInfo
	err  error
	// owner is the file's owner and signal, read along (nil: not read,
	// or not readable; dumpFown then reads it itself, and says why not).
	owner *fown.FownEntry
}

// gatherParallelMin is the least descriptors worth reading with several
// goroutines: each takes three /proc calls, and a process with thousands
// of files spends most of its dump in them.
const gatherParallelMin = 256

// gatherFds reads /proc for every descriptor of pid (frozen), in fd
// order; a table of gatherParallelMin or more is read by one goroutine
// per CPU.
func gatherFds(pid, pidfd int, fds []int) ([]fdFacts, error) {
	dir, err := proc.OpenFdDir(pid)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	out := make([]fdFacts, len(fds))
	workers := 1
	if len(fds) >= gatherParallelMin {
		workers = runtime.GOMAXPROCS(0)
	}
	eachAtOnce(len(fds), workers, func(i int) { out[i] = readFdFacts(dir, pidfd, fds[i]) })
	return out, nil
}

// eachAtOnce calls f(0) ... f(n-1) from workers goroutines, the caller's
// among them, each taking the next index, and returns when all are done.
func eachAtOnce(n, workers int, f func(i int)) {
	var next atomic.Int64
	run := func() {
		for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
			f(i)
		}
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Add(1)
		go func() { defer wg.Done(); run() }()
	}
	run()
	wg.Wait()
}

// readFdFacts reads what /proc says of fd (its link and fdinfo), and the
// file's stat and owner through a copy of the descriptor (pidfd_getfd on
// pidfd): a table of thousands pays these calls in parallel here rather
// than one after the other in dumpFd and dumpFown. The stat of the copy is
// the stat of /proc/PID/fd/FD without its path walk.
func readFdFacts(dir *proc.FdDir, pidfd, fd int) fdFacts {
	f := fdFacts{fd: fd}
	if f.link, f.err = dir.Link(fd); f.err != nil {
		return f
	}
	if f.info, f.err = dir.Info(fd); f.err != nil {
		return f
	}
	mine, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil { // dumpFown says why, if it needs the copy
		f.st, f.err = os.Stat(fmt.Sprintf("/proc/%d/fd/%d", dir.Pid(), fd))
		return f
	}
	defer unix.Close(mine)
	if f.st, err = fstatInfo(mine, strconv.Itoa(fd)); err != nil {
		f.err = fmt.Errorf("fstat of a copy of fd %d: %w", fd, err)
		return f
	}
	if f.info.Flags&unix.O_PATH == 0 {
		fo := &fown.FownEntry{}
		if readFown(mine, fo) == nil { // if not, dumpFown reads it again and says why
			f.owner = fo
		}
	}
	return f
}

func (d *Dumper) dumpFd(pid int, f fdFacts) (*fdinfo.FdinfoEntry, error) {
	if f.err != nil {
		return nil, f.err
	}
	fdFlags := uint32(0)
	if f.info.Flags&unix.O_CLOEXEC != 0 {
		fdFlags = unix.FD_CLOEXEC
	}
	e := &fdinfo.FdinfoEntry{Flags: proto.Uint32(fdFlags), Fd: proto.Uint32(uint32(f.fd))}
	key := keyOf(f.st)
	if id, ok := d.sameFile(pid, f.fd, key); ok {
		e.Id, e.Type = proto.Uint32(id), d.Table.entries[id-1].GetType().Enum()
		return e, nil
	}
	id, typ, err := d.addFile(pid, f.fd, f.link, f.info, f.st)
	if err != nil {
		return nil, err
	}
	d.known[key] = append(d.known[key], knownFd{pid, f.fd, id})
	e.Id, e.Type = proto.Uint32(id), typ.Enum()
	return e, nil
}

// addFile adds the file behind pid's fd to the table.
func (d *Dumper) addFile(pid, fd int, link string, info proc.FdInfo, st os.FileInfo) (uint32, fdinfo.FdTypes, error) {
	flags := info.Flags &^ unix.O_CLOEXEC
	t := d.Table
	switch {
	case strings.HasPrefix(link, "pipe:["):
		id, err := t.addPipe(st, flags)
		if err != nil || d.pipes[inode(st)] {
			return id, fdinfo.FdTypes_PIPE, err
		}
		d.pipes[inode(st)] = true
		pd, err := readPipeData(pid, fd, inode(st))
		if len(pd.Data) > 0 || pd.Size != defaultPipeSize {
			d.Pipes = append(d.Pipes, pd)
		}
		return id, fdinfo.FdTypes_PIPE, err
	case link == eventfdLink:
		return t.addEventfd(pid, fd, info, flags, d.opts.Warnf)
	case link == eventpollLink:
		return t.addEventpoll(d.watchOwner(pid), pid, fd, info, flags)
	case link == signalfdLink:
		return t.addSignalfd(info, flags)
	case link == timerfdLink:
		return t.addTimerfd(pid, fd, flags)
	case link == inotifyLink:
		return t.addInotify(pid, fd, info, flags, d.opts.Warnf)
	case link == fanotifyLink:
		return t.addFanotify(pid, fd, info, flags, d.opts.Warnf)
	case link == pidfdLink:
		return d.addPidfd(info, flags)
	case isNsLink(link):
		return d.addNsFile(link, st, flags)
	case strings.HasPrefix(link, "socket:[") && st.Mode()&os.ModeSocket != 0:
		return d.sockets.Add(pid, fd, inode(st), flags)
	case isMemfdLink(link), d.anonShmemAsMemfd(st):
		return d.addMemfd(pid, fd, link, info, st, flags)
	case ptyOf(st) != notPty:
		return d.addTty(pid, fd, link, st, ptyOf(st), flags)
	case strings.HasSuffix(link, " (deleted)") && st.Mode()&os.ModeNamedPipe == 0:
		if err := d.onTreeMount(link, info, st); err != nil {
			return 0, 0, err
		}
		id, err := d.addGhost(pid, fd, link, info, st, flags)
		return id, fdinfo.FdTypes_REG, err
	case st.Mode()&os.ModeNamedPipe != 0 && strings.HasPrefix(link, "/"):
		if err := d.onTreeMount(link, info, st); err != nil {
			return 0, 0, err
		}
		id, err := d.addFifo(pid, fd, link, info, st, flags)
		return id, fdinfo.FdTypes_FIFO, err
	case st.Mode()&os.ModeSocket != 0, st.Mode()&os.ModeNamedPipe != 0, !strings.HasPrefix(link, "/"):
		return 0, 0, fmt.Errorf("%s: this kind of file is not supported yet", link)
	case isVT(st) && !d.opts.ShellJob:
		return d.addVT(pid, fd, strings.TrimSuffix(link, " (deleted)"), st, flags)
	case isTerminal(st):
		if !d.opts.ShellJob {
			id, err := d.addTerminal(t, pid, fd, link, st, flags)
			return id, fdinfo.FdTypes_REG, err
		}
		return t.addReg(link, flags, 0, st), fdinfo.FdTypes_REG, nil
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		return 0, 0, fmt.Errorf("%s: block devices are not supported", link)
	}
	if dead := d.deadProcPid(fmt.Sprintf("/proc/%d/fd/%d", pid, fd), link); dead != 0 {
		id := d.addDeadProc(dead, link, uint64(info.Pos), st, flags)
		t.setMount(id, info.MntID)
		return id, fdinfo.FdTypes_REG, nil
	}
	if err := d.onTreeMount(link, info, st); err != nil {
		return 0, 0, err
	}
	id := t.addReg(link, flags, uint64(info.Pos), st)
	t.setMount(id, info.MntID)
	return id, fdinfo.FdTypes_REG, nil
}

// anonShmemAsMemfd tells a file of anonymous shared memory dumped as a
// memfd (ShmemAsMemfd).
func (d *Dumper) anonShmemAsMemfd(st os.FileInfo) bool {
	s, ok := st.Sys().(*syscall.Stat_t)
	return ok && d.ShmemAsMemfd != nil && d.opts.ShmemDev != 0 && s.Dev == d.opts.ShmemDev && d.ShmemAsMemfd(s.Ino)
}

// onTreeMount refuses a file named by path that is on a mount outside
// the tree's mount namespace (Table.onTreeMount), but for the kernel's
// internal shmem mount, which is in no namespace: a file of it (shared
// anonymous memory opened through map_files) is the tree's in a mount
// namespace as on the host.
func (d *Dumper) onTreeMount(path string, info proc.FdInfo, st os.FileInfo) error {
	if s, ok := st.Sys().(*syscall.Stat_t); ok && d.opts.ShmemDev != 0 && s.Dev == d.opts.ShmemDev {
		return nil
	}
	return d.Table.onTreeMount(path, info)
}

// sameFile finds a descriptor seen earlier, in this process or another,
// that shares fd's open file description (dup, or inherited across fork):
// both are one file of the image.
func (d *Dumper) sameFile(pid, fd int, key fileKey) (uint32, bool) {
	for _, k := range d.known[key] {
		r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(k.pid), kcmpFile, uintptr(fd), uintptr(k.fd), 0)
		if e == 0 && r == 0 {
			return k.id, true
		}
	}
	return 0, false
}

func keyOf(st os.FileInfo) fileKey {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return fileKey{s.Dev, s.Ino}
	}
	return fileKey{}
}

// sameFile tells whether a and b are the stats of one file: os.SameFile
// says no to any stat it did not make itself, as fstatInfo's are.
func sameFile(a, b os.FileInfo) bool {
	k := keyOf(a)
	return k != (fileKey{}) && k == keyOf(b)
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
