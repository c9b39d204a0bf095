package files

// File locks (filelocks.img), kept only with --file-locks as CRIU keeps
// them: flock(2) locks, OFD locks (fcntl F_OFD_SETLK) and leases (fcntl
// F_SETLEASE) belong to an open file description, so whichever process
// holds the description takes them again, the one that took them first
// if it is in the tree (the kernel records its PID); POSIX locks (fcntl
// F_SETLK) belong to the process that took them, which takes them again
// through a descriptor of the same open file. The kernel lists each
// lock in the fdinfo of the descriptors that hold it ("lock:" lines);
// /proc/locks, which names the file but not the descriptor, is checked
// for POSIX locks of the tree that no descriptor showed. A lease being
// broken (someone opened the file meanwhile) is taken as it was before
// and broken again (LeaseBreak), the signal the break sends taken back
// from the task: the process was told when the break began. Without
// --file-locks a process holding a lock is refused, as CRIU refuses it:
// its restore would run without the lock, beside whoever else then takes
// it.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"unsafe"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	filelock "github.com/checkpoint-restore/go-criu/v8/crit/images/file-lock"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fown"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/fsroot"
	"amber/internal/image"
	"amber/internal/plan"
	"amber/internal/proc"
)

// Kinds of lock, FileLockEntry.flag (CRIU's FL_* of file-lock.h).
const (
	flPosix = 1 // fcntl F_SETLK: owned by a process
	flFlock = 2 // flock(2): owned by an open file description
	flOFD   = 4 // fcntl F_OFD_SETLK: owned by an open file description
	flLease = 8 // fcntl F_SETLEASE: owned by an open file description
)

// leaseBreaking marks in FileLockEntry.type a lease being broken, whose
// type is then the one it is broken to (CRIU's LEASE_BREAKING).
const leaseBreaking = 4

// lockKinds maps the kernel's names of lock kinds to the image's.
var lockKinds = map[string]uint32{"POSIX": flPosix, "FLOCK": flFlock, "OFDLCK": flOFD, "LEASE": flLease}

// lockTypes maps the kernel's names of lock types to the image's,
// fcntl's F_RDLCK and F_WRLCK for every kind.
var lockTypes = map[string]uint32{"READ": unix.F_RDLCK, "WRITE": unix.F_WRLCK}

// lockKey tells two sightings of one lock apart from two locks: the
// same range of one file, owned by the same process (POSIX) or open
// file description (flock, OFD).
type lockKey struct {
	pid        int    // POSIX
	file       uint32 // flock, OFD: the file id of the description
	kind, typ  uint32
	dev, ino   uint64
	start, end int64
}

// lockDump collects the locks of the tree for filelocks.img.
type lockDump struct {
	entries []*filelock.FileLockEntry
	// takers are the PIDs the kernel recorded with each entry's lock:
	// a POSIX lock seen through a descriptor table that processes share
	// (CLONE_FILES) may be another one's.
	takers []int
	seen   map[lockKey]int // index in entries
}

// noteLocks records the locks the fdinfo of pid's fd lists; id is the
// file id of its open file description, link what it is.
func (d *Dumper) noteLocks(pid, fd int, id uint32, link string, info proc.FdInfo) error {
	locks, err := info.Locks()
	if err != nil {
		return err
	}
	for _, l := range locks {
		if l.Blocked {
			continue
		}
		e, err := lockEntry(l)
		if err != nil {
			return fmt.Errorf("%s: %w", link, err)
		}
		if !d.opts.FileLocks {
			return fmt.Errorf("holds %s on %s: dump with --file-locks to save file locks", describeLock(e), link)
		}
		if d.locks == nil {
			d.locks = &lockDump{seen: map[lockKey]int{}}
		}
		d.locks.add(pid, fd, id, l, e)
	}
	return nil
}

// lockEntry is the image's entry of l, without its owner.
func lockEntry(l proc.Lock) (*filelock.FileLockEntry, error) {
	kind, typ := lockKinds[l.Kind], lockTypes[l.Type]
	switch {
	case kind == flLease && l.Mode == "BREAKING" && (l.Type == "READ" || l.Type == "UNLCK"):
		typ = unix.F_UNLCK
		if l.Type == "READ" {
			typ = unix.F_RDLCK
		}
		return &filelock.FileLockEntry{Flag: proto.Uint32(kind), Type: proto.Uint32(typ | leaseBreaking),
			Start: proto.Int64(l.Start), Len: proto.Int64(0)}, nil
	case kind == flLease && l.Mode != "ACTIVE":
		return nil, fmt.Errorf("a %s lease in state %s: not supported", l.Type, l.Mode)
	case kind == 0 || (kind != flLease && l.Mode != "ADVISORY"):
		return nil, fmt.Errorf("a %s %s lock: not supported", l.Mode, l.Kind)
	case l.Type != "READ" && l.Type != "WRITE":
		return nil, fmt.Errorf("a %s lock of type %s: not supported", l.Kind, l.Type)
	}
	length := int64(0) // to the end of the file
	if l.End != proc.ToEOF {
		length = l.End - l.Start + 1
	}
	return &filelock.FileLockEntry{Flag: proto.Uint32(kind), Type: proto.Uint32(typ),
		Start: proto.Int64(l.Start), Len: proto.Int64(length)}, nil
}

// add records lock l, seen through pid's fd (file id), unless it is
// already recorded: a lock shows in the fdinfo of every descriptor of
// its open file, in every process. An flock or OFD lock goes to the
// process that took it (l.Pid) if it holds the description, so that the
// kernel records the same PID again.
func (s *lockDump) add(pid, fd int, id uint32, l proc.Lock, e *filelock.FileLockEntry) {
	key := lockKey{kind: e.GetFlag(), typ: e.GetType(), dev: l.Dev, ino: l.Ino, start: l.Start, end: l.End}
	if key.kind == flPosix {
		key.pid = l.Pid
	} else {
		key.file = id
	}
	if i, ok := s.seen[key]; ok {
		if key.kind != flPosix && l.Pid == pid && s.entries[i].GetPid() != int32(pid) {
			s.entries[i].Pid, s.entries[i].Fd = proto.Int32(int32(pid)), proto.Int32(int32(fd))
		}
		return
	}
	e.Pid, e.Fd = proto.Int32(int32(pid)), proto.Int32(int32(fd))
	s.seen[key] = len(s.entries)
	s.entries = append(s.entries, e)
	s.takers = append(s.takers, l.Pid)
}

// ownPosix gives each POSIX lock to the process that took it when that
// is another process of the tree (pids) sharing the descriptor table it
// was seen through: either owns it, the kernel reports the taker.
func (s *lockDump) ownPosix(pids map[int]bool) {
	if s == nil {
		return
	}
	for i, e := range s.entries {
		if taker := s.takers[i]; e.GetFlag() == flPosix && taker != int(e.GetPid()) && pids[taker] {
			e.Pid = proto.Int32(int32(taker))
		}
	}
}

// lockTable is what reading /proc/locks gave.
type lockTable struct {
	locks []proc.Lock
	err   error
}

// ReadLocksAhead starts reading /proc/locks, which CheckLocks needs, once
// the tree is frozen (its locks no longer change), and returns at once.
// The kernel lists the locks holding its file-lock semaphore for
// writing, and taking it from idle waits for an RCU grace period: 10 ms
// on these VMs, which the frozen tree spends while the dump collects
// everything else instead of waiting at CheckLocks.
func (d *Dumper) ReadLocksAhead() {
	table := make(chan lockTable, 1)
	go func() {
		locks, err := proc.ReadLocks()
		table <- lockTable{locks, err}
	}()
	d.procLocks = table
}

// readLocks gives /proc/locks: what ReadLocksAhead read, or a read now.
func (d *Dumper) readLocks() ([]proc.Lock, error) {
	if d.procLocks == nil {
		return proc.ReadLocks()
	}
	t := <-d.procLocks
	d.procLocks = nil
	return t.locks, t.err
}

// CheckLocks refuses a POSIX lock that a process of the tree (pids)
// holds, according to /proc/locks, but that none of its descriptors
// showed: its restore would lack it. It gives the POSIX locks seen
// through a shared descriptor table to the process that took them.
func (d *Dumper) CheckLocks(pids map[int]bool) error {
	d.locks.ownPosix(pids)
	all, err := d.readLocks()
	if err != nil {
		return fmt.Errorf("file locks: %w", err)
	}
	for _, l := range all {
		if l.Blocked || l.Kind != "POSIX" || !pids[l.Pid] {
			continue
		}
		if !d.locks.holds(l) {
			return fmt.Errorf("pid %d holds a POSIX %s lock on file %d:%d inode %d (bytes %s) that none of its descriptors shows",
				l.Pid, l.Type, unix.Major(l.Dev), unix.Minor(l.Dev), l.Ino, lockRange(l.Start, l.End))
		}
	}
	return nil
}

// holds tells whether POSIX lock l was recorded.
func (s *lockDump) holds(l proc.Lock) bool {
	if s == nil {
		return false
	}
	key := lockKey{pid: l.Pid, kind: flPosix, typ: lockTypes[l.Type], dev: l.Dev, ino: l.Ino, start: l.Start, end: l.End}
	_, ok := s.seen[key]
	return ok
}

// write writes filelocks.img, if the tree holds locks, with the pids
// pidOf gives (nil: amber's).
func (s *lockDump) write(dir image.Dir, pidOf func(int) int) error {
	if s == nil || len(s.entries) == 0 {
		return nil
	}
	msgs := make([]proto.Message, len(s.entries))
	for i, e := range s.entries {
		if pidOf != nil { // the images hold the pids of the tree's pid namespace
			e.Pid = proto.Int32(int32(pidOf(int(e.GetPid()))))
		}
		msgs[i] = e
	}
	return image.WriteFile(dir.FileLocksPath(), image.FileLocks, msgs...)
}

// describeLock names the kind, type and range of a lock for messages.
func describeLock(e *filelock.FileLockEntry) string {
	typ := map[uint32]string{unix.F_RDLCK: "read", unix.F_WRLCK: "write"}[e.GetType()]
	end := int64(proc.ToEOF)
	if e.GetLen() != 0 {
		end = e.GetStart() + e.GetLen() - 1
	}
	switch e.GetFlag() {
	case flFlock:
		return map[uint32]string{unix.F_RDLCK: "a shared flock", unix.F_WRLCK: "an exclusive flock"}[e.GetType()]
	case flOFD:
		return fmt.Sprintf("an OFD %s lock (bytes %s)", typ, lockRange(e.GetStart(), end))
	case flLease:
		if e.GetType()&leaseBreaking != 0 {
			return fmt.Sprintf("a lease being broken to %s", map[uint32]string{unix.F_RDLCK: "read", unix.F_UNLCK: "none"}[e.GetType()&^leaseBreaking])
		}
		return fmt.Sprintf("a %s lease", typ)
	default:
		return fmt.Sprintf("a POSIX %s lock (bytes %s)", typ, lockRange(e.GetStart(), end))
	}
}

// lockRange shows the bytes a lock covers.
func lockRange(start, end int64) string {
	if end == proc.ToEOF {
		return fmt.Sprintf("%d to the end", start)
	}
	return fmt.Sprintf("%d-%d", start, end)
}

// Locks are the entries of filelocks.img by the PID that takes each
// again.
type Locks map[int][]*filelock.FileLockEntry

// ReadLocks reads and checks filelocks.img; no such image: no locks.
func ReadLocks(dir image.Dir) (Locks, error) {
	p := dir.FileLocksPath()
	entries, err := image.ReadFile(p, image.FileLocks, func() *filelock.FileLockEntry { return new(filelock.FileLockEntry) })
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := Locks{}
	for i, e := range entries {
		if err := checkLock(e); err != nil {
			return nil, fmt.Errorf("%s: entry %d (pid %d fd %d): %w", p, i, e.GetPid(), e.GetFd(), err)
		}
		out[int(e.GetPid())] = append(out[int(e.GetPid())], e)
	}
	return out, nil
}

// Len is how many locks there are.
func (l Locks) Len() int {
	n := 0
	for _, es := range l {
		n += len(es)
	}
	return n
}

// checkLock refuses an entry amber cannot take again.
func checkLock(e *filelock.FileLockEntry) error {
	switch e.GetFlag() {
	case flPosix, flFlock, flOFD, flLease:
	default:
		return fmt.Errorf("unknown kind of lock (flag %#x)", e.GetFlag())
	}
	t := e.GetType()
	if e.GetFlag() == flLease && (t == unix.F_RDLCK|leaseBreaking || t == unix.F_UNLCK|leaseBreaking) {
		t = unix.F_RDLCK // a lease being broken, to read or to none
	}
	if t != unix.F_RDLCK && t != unix.F_WRLCK {
		return fmt.Errorf("lock type %#x: want F_RDLCK or F_WRLCK", e.GetType())
	}
	if e.GetPid() <= 0 || e.GetFd() < 0 || e.GetStart() < 0 || e.GetLen() < 0 {
		return errors.New("negative pid, fd, start or length")
	}
	return nil
}

// LeaseBreak is a lease being broken at the dump, taken again in its
// state before the break: amber breaks it again once the process's
// program ran, by opening Path with Flags, and the process then takes
// back the signal the break sends it (rt_sigtimedwait of Signum, its
// set and zero timeout at Set and Timeout in the scratch area).
type LeaseBreak struct {
	Fd, Flags    int
	Path         string
	Signum       int
	Set, Timeout uint64
	Pid          int
	// Owner is the address of the struct f_owner_ex to give the file
	// back once the signal is taken (0: the process itself).
	Owner uint64
}

// PlanLocks plans taking the locks of a process again, through the
// descriptors of its table fds (files: the files they open). It must
// come after the last close of its restore: closing any descriptor of a
// file drops the POSIX locks the process holds on it. A lock someone
// else took meanwhile fails the restore (EAGAIN) rather than wait. It
// returns the leases to break once the program ran.
func PlanLocks(b *plan.Builder, pid int, locks []*filelock.FileLockEntry, fds []*fdinfo.FdinfoEntry, files Index) ([]LeaseBreak, error) {
	var breaks []LeaseBreak
	for _, e := range locks {
		fd := e.GetFd()
		i := slices.IndexFunc(fds, func(f *fdinfo.FdinfoEntry) bool { return int32(f.GetFd()) == fd })
		if i < 0 {
			return nil, fmt.Errorf("filelocks.img: pid %d takes %s on fd %d, which it does not have", pid, describeLock(e), fd)
		}
		if e.GetFlag() == flLease && e.GetType()&leaseBreaking != 0 {
			br, err := planBreakingLease(b, pid, e, files[fds[i].GetId()])
			if err != nil {
				return nil, fmt.Errorf("filelocks.img: pid %d fd %d: %w", pid, fd, err)
			}
			breaks = append(breaks, br)
			continue
		}
		planLock(b, e)
	}
	return breaks, nil
}

// planBreakingLease plans taking the lease e was before its break began:
// a read lease on a file open read-only, else a write lease.
func planBreakingLease(b *plan.Builder, pid int, e *filelock.FileLockEntry, f *fdinfo.FileEntry) (LeaseBreak, error) {
	reg := f.GetReg()
	if reg == nil {
		return LeaseBreak{}, fmt.Errorf("%s on a file that is not a regular file", describeLock(e))
	}
	fo, flags := fileFown(f)
	before, breakFlags := uint64(unix.F_WRLCK), unix.O_RDONLY
	if flags&unix.O_ACCMODE == unix.O_RDONLY {
		before = unix.F_RDLCK
	}
	if e.GetType()&^leaseBreaking == unix.F_UNLCK {
		breakFlags = unix.O_WRONLY
	}
	sig := int(fo.GetSignum())
	if sig == 0 {
		sig = int(unix.SIGIO)
	}
	foreign := fo.GetPid() != 0 && int(fo.GetPid()) != pid
	if foreign {
		// The break signals the file's owner: this process, for the
		// time it takes back the signal (a lease makes its taker the
		// owner of a file that has none).
		b.Call(fmt.Sprintf("fd %d owned by none, for its lease break", e.GetFd()), unix.SYS_FCNTL, uint64(e.GetFd()), unix.F_SETOWN, 0)
	}
	b.Call(fmt.Sprintf("take a lease of type %d on fd %d, to break", before, e.GetFd()), unix.SYS_FCNTL, uint64(e.GetFd()), unix.F_SETLEASE, before)
	br := LeaseBreak{Fd: int(e.GetFd()), Flags: breakFlags, Path: reg.GetName(), Signum: sig, Pid: pid,
		Set: b.Uint64s(1 << (sig - 1)), Timeout: b.Uint64s(0, 0)}
	if foreign {
		br.Owner = b.Bytes(ownerEx(fo))
	}
	return br, nil
}

// ownerEx is the struct f_owner_ex of fo.
func ownerEx(fo *fown.FownEntry) []byte {
	owner := binary.LittleEndian.AppendUint32(nil, fo.GetPidType())
	return binary.LittleEndian.AppendUint32(owner, fo.GetPid())
}

func planLock(b *plan.Builder, e *filelock.FileLockEntry) {
	what := fmt.Sprintf("take %s on fd %d", describeLock(e), e.GetFd())
	fd := uint64(e.GetFd())
	switch e.GetFlag() {
	case flFlock:
		op := uint64(unix.LOCK_SH)
		if e.GetType() == unix.F_WRLCK {
			op = unix.LOCK_EX
		}
		b.Call(what, unix.SYS_FLOCK, fd, op|unix.LOCK_NB)
		return
	case flLease:
		b.Call(what, unix.SYS_FCNTL, fd, unix.F_SETLEASE, uint64(e.GetType()))
		return
	}
	cmd := uint64(unix.F_SETLK)
	if e.GetFlag() == flOFD {
		cmd = unix.F_OFD_SETLK
	}
	fl := unix.Flock_t{Type: int16(e.GetType()), Whence: io.SeekStart, Start: e.GetStart(), Len: e.GetLen()}
	b.Call(what, unix.SYS_FCNTL, fd, cmd, b.Bytes(unsafe.Slice((*byte)(unsafe.Pointer(&fl)), unsafe.Sizeof(fl))))
}

// Break breaks the lease again, from amber, opening the file in the
// tree's root (nil: amber's): the open must fail with EWOULDBLOCK, the
// lease being there.
func (br LeaseBreak) Break(root *fsroot.Root) error {
	fd, err := root.Open(br.Path, br.Flags|unix.O_NONBLOCK, 0)
	if err == nil {
		unix.Close(fd)
		return fmt.Errorf("pid %d fd %d: break the lease on %s: no lease", br.Pid, br.Fd, br.Path)
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("pid %d fd %d: break the lease on %s: %w", br.Pid, br.Fd, br.Path, err)
	}
	return nil
}
