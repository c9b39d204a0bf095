package files

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pidfd"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
	"amber/internal/proc"
)

// A pidfd refers to a process, or with PIDFD_THREAD to a thread, or to
// one that has exited and been reaped (fdinfo says "Pid: -1"). The image
// is CRIU 4.2's PidfdEntry in files.img: the target's PID as the tree
// sees it (nspid, -1 for a dead one), the open flags and the pidfs inode,
// which tells which pidfds pointed to one dead process.
//
// A pidfd to a task of the tree is opened again with pidfd_open in its
// holder's final section, once every process and thread of the tree
// exists (a parent's files are made before its children are forked); a
// descriptor table holding one file twice gets a dup, but two tables
// sharing one get an open file each: by then the tasks run with their own
// credentials and cannot take a file from one another. A pidfd to a dead
// process must point to a dead process again: amber starts a process
// that never runs for each dumped dead one, opens the pidfds of all that
// pointed to it (one pidfs inode again), ends it, and the holders take
// theirs from amber (OpenDeadPidfds), or open them again through amber's
// /proc from a pid namespace where amber has no PID (reopenDeadPidfd).

// pidfdLink is what /proc/PID/fd shows for a pidfd, with pidfs (Linux
// 6.9+) as with the anonymous inodes before it.
const pidfdLink = "anon_inode:[pidfd]"

// pidfdFlags are the open flags pidfd_open takes: PIDFD_NONBLOCK and
// PIDFD_THREAD (O_EXCL).
const pidfdFlags = unix.O_NONBLOCK | unix.O_EXCL

// deadNspid is the nspid of a pidfd whose process is gone.
const deadNspid = -1

// addPidfd records the pidfd whose fdinfo is info. Its target must be a
// task of the dumped tree, or dead: another process would not be there
// at restore.
func (d *Dumper) addPidfd(info proc.FdInfo, flags uint32) (uint32, fdinfo.FdTypes, error) {
	pid, err := fdinfoPid(info, "Pid")
	if err != nil {
		return 0, 0, err
	}
	nspid, err := fdinfoPid(info, "NSpid")
	if err != nil {
		return 0, 0, err
	}
	if pid != deadNspid && (d.InTree == nil || !d.InTree(int(pid))) {
		return 0, 0, fmt.Errorf("a pidfd of pid %d, which is not in the dumped tree", pid)
	}
	return d.Table.addEntry(fdinfo.FdTypes_PIDFD, func(e *fdinfo.FileEntry, id uint32) {
		e.Pidfd = &pidfd.PidfdEntry{
			Id: proto.Uint32(id), Ino: proto.Uint32(uint32(info.Ino)), Flags: proto.Uint32(flags &^ unix.O_ACCMODE),
			Nspid: proto.Int32(nspid), Fown: newFown(),
		}
	})
}

// fdinfoPid reads a pidfd's fdinfo line key: one PID, or for NSpid one
// per PID namespace, the innermost last.
func fdinfoPid(info proc.FdInfo, key string) (int32, error) {
	fields := strings.Fields(info.Extra[key])
	if len(fields) == 0 {
		return 0, fmt.Errorf("pidfd: fdinfo has no %s line", key)
	}
	n, err := strconv.ParseInt(fields[len(fields)-1], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("pidfd: fdinfo %s %q: %w", key, info.Extra[key], err)
	}
	return int32(n), nil
}

// livePidfd tells a pidfd entry whose target is a task of the tree: it
// is opened in the final section.
func livePidfd(e *fdinfo.FileEntry, inTree func(pid int) bool) bool {
	nspid := e.GetPidfd().GetNspid()
	return e.GetType() == fdinfo.FdTypes_PIDFD && nspid != deadNspid && inTree != nil && inTree(int(nspid))
}

// planLivePidfd opens pidfd e again on its restored target, and returns
// the descriptor.
func planLivePidfd(b *plan.Builder, e *fdinfo.FileEntry) int {
	p := e.GetPidfd()
	fd := b.Next()
	b.Call(fmt.Sprintf("pidfd_open pid %d flags %#o (file id %d) as fd %d", p.GetNspid(), p.GetFlags()&pidfdFlags, e.GetId(), fd),
		unix.SYS_PIDFD_OPEN, uint64(p.GetNspid()), uint64(p.GetFlags()&pidfdFlags))
	return b.Take()
}

// makePidfd makes a pidfd that is not opened late: one to a dead process,
// taken from amber (DeadPidfds). One to a live process outside the tree
// is refused, and so is one of the tree in flight (SCM_RIGHTS), which
// would be sent before the tree exists.
func (p *fdPlanner) makePidfd(e *fdinfo.FileEntry) (int, error) {
	pe := e.GetPidfd()
	if pe == nil {
		return 0, fmt.Errorf("file id %d: PIDFD entry without pidfd", e.GetId())
	}
	switch nspid := pe.GetNspid(); {
	case nspid != deadNspid && p.in.TreePid != nil && p.in.TreePid(int(nspid)):
		// Late files are those of the task's table, not one it sends.
		return 0, fmt.Errorf("file id %d: a pidfd of pid %d of the tree, in flight on a socket: not supported yet", e.GetId(), nspid)
	case nspid != deadNspid:
		return 0, fmt.Errorf("file id %d: a pidfd of pid %d, which is not in the restored tree", e.GetId(), nspid)
	}
	fd, ok := p.in.DeadPidfds[e.GetId()]
	if !ok {
		return 0, fmt.Errorf("file id %d: a pidfd of a dead process, and amber made none for it", e.GetId())
	}
	what := fmt.Sprintf("pidfd of a dead process, file id %d", e.GetId())
	if p.amberPidfd > 0 || !p.in.AmberHidden {
		return p.takeFromAmber(fd, what)
	}
	return p.reopenDeadPidfd(pe, fd, what), nil
}

// reopenDeadPidfd plans opening amber's pidfd fd again, for a task in a
// pid namespace where amber has no PID to take it from: through amber's
// /proc, which the task sees over its own until the tree is restored
// (mounts.Restore), as a new open file of the same pidfs inode. open
// drops O_EXCL, so PIDFD_THREAD is not kept; of a process that is gone
// it would only tell that the pidfd was opened for a thread.
func (p *fdPlanner) reopenDeadPidfd(pe *pidfd.PidfdEntry, fd int, what string) int {
	if pe.GetFlags()&unix.O_EXCL != 0 && p.in.Warnf != nil {
		p.in.Warnf("file id %d: a pidfd of a dead thread (PIDFD_THREAD) in a new pid namespace is restored without the flag", pe.GetId())
	}
	flags := unix.O_RDWR | int(pe.GetFlags()&unix.O_NONBLOCK)
	return p.b.Open(what, fmt.Sprintf("/proc/%d/fd/%d", p.in.AmberPid, fd), flags, 0)
}

// DeadPidfds are amber's pidfds standing for those of the images whose
// process was dead: the tasks holding them take them with pidfd_getfd.
type DeadPidfds struct {
	// Fds are amber's descriptors by file id.
	Fds map[uint32]int
}

// OpenDeadPidfds opens a pidfd in amber for each pidfd of idx whose
// process was dead, with its flags; those that pointed to one dead
// process (one pidfs inode) point to one process again, and those of two
// to two. exited starts a process that never runs and returns its PID and
// a function that kills and reaps it (amber's restore stub).
func OpenDeadPidfds(idx Index, exited func() (int, func(), error)) (*DeadPidfds, error) {
	groups := deadPidfdGroups(idx)
	d := &DeadPidfds{Fds: map[uint32]int{}}
	for _, ino := range slices.Sorted(maps.Keys(groups)) {
		if err := d.openGroup(groups[ino], exited); err != nil {
			d.Close()
			return nil, fmt.Errorf("pidfds of the dead process with pidfs inode %d: %w", ino, err)
		}
	}
	return d, nil
}

// deadPidfdGroups sorts the pidfds of dead processes by pidfs inode.
func deadPidfdGroups(idx Index) map[uint32][]*pidfd.PidfdEntry {
	out := map[uint32][]*pidfd.PidfdEntry{}
	for _, e := range idx {
		if p := e.GetPidfd(); e.GetType() == fdinfo.FdTypes_PIDFD && p.GetNspid() == deadNspid {
			out[p.GetIno()] = append(out[p.GetIno()], p)
		}
	}
	return out
}

func (d *DeadPidfds) openGroup(group []*pidfd.PidfdEntry, exited func() (int, func(), error)) error {
	pid, end, err := exited()
	if err != nil {
		return err
	}
	defer end()
	for _, p := range group {
		fd, err := unix.PidfdOpen(pid, int(p.GetFlags()&pidfdFlags))
		if err != nil {
			return fmt.Errorf("file id %d: pidfd_open pid %d flags %#o: %w", p.GetId(), pid, p.GetFlags()&pidfdFlags, err)
		}
		d.Fds[p.GetId()] = fd
	}
	return nil
}

// Close closes amber's descriptors.
func (d *DeadPidfds) Close() {
	if d == nil {
		return
	}
	for _, fd := range d.Fds {
		unix.Close(fd)
	}
	d.Fds = nil
}

// FileFds returns amber's descriptors by file id (nil: none).
func (d *DeadPidfds) FileFds() map[uint32]int {
	if d == nil {
		return nil
	}
	return d.Fds
}
