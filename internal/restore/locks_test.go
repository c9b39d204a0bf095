package restore

import (
	"encoding/binary"
	"strings"
	"testing"
	"unsafe"

	filelock "github.com/checkpoint-restore/go-criu/v8/crit/images/file-lock"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/files"
	"amber/internal/image"
	"amber/internal/plan"
)

func lockEntry(flag, typ uint32, pid, fd int32, start, length int64) *filelock.FileLockEntry {
	return &filelock.FileLockEntry{Flag: proto.Uint32(flag), Type: proto.Uint32(typ), Pid: proto.Int32(pid),
		Fd: proto.Int32(fd), Start: proto.Int64(start), Len: proto.Int64(length)}
}

// TestPlanTaskFileLocks: a process's locks are taken last of all, after
// every close of its restore (a close drops its POSIX locks on the file),
// through the dumped descriptors, without waiting.
func TestPlanTaskFileLocks(t *testing.T) {
	im := newImages()
	h := im.host()
	h.locks = files.Locks{testPid: {
		lockEntry(1, unix.F_WRLCK, testPid, 3, 10, 5), // POSIX
		lockEntry(2, unix.F_RDLCK, testPid, 3, 0, 0),  // flock
		lockEntry(4, unix.F_WRLCK, testPid, 3, 4096, 0),
		lockEntry(8, unix.F_RDLCK, testPid, 3, 0, 0), // lease
	}}
	p, err := planTask(im.t, h, &origin{current: stub()})
	if err != nil {
		t.Fatal(err)
	}
	prog := p.prog
	fin := section(t, prog, sectionFinal)
	if len(fin) < 4 {
		t.Fatalf("final section: %d calls, want the 4 locks last:\n%s", len(fin), prog)
	}
	got := fin[len(fin)-4:]
	flock := func(c plan.Call) unix.Flock_t {
		return *(*unix.Flock_t)(unsafe.Pointer(&prog.Image[c.Args[2]-prog.Base]))
	}
	if c := got[0]; c.Nr != unix.SYS_FCNTL || c.Args[0] != 3 || c.Args[1] != unix.F_SETLK {
		t.Errorf("POSIX lock: %s %v", plan.SyscallName(c.Nr), c.Args)
	} else if fl := flock(c); fl.Type != unix.F_WRLCK || fl.Whence != 0 || fl.Start != 10 || fl.Len != 5 {
		t.Errorf("POSIX lock: %+v", fl)
	}
	if c := got[1]; c.Nr != unix.SYS_FLOCK || c.Args[0] != 3 || c.Args[1] != unix.LOCK_SH|unix.LOCK_NB {
		t.Errorf("flock: %s %v, want flock(3, LOCK_SH|LOCK_NB)", plan.SyscallName(c.Nr), c.Args)
	}
	if c := got[2]; c.Nr != unix.SYS_FCNTL || c.Args[1] != unix.F_OFD_SETLK {
		t.Errorf("OFD lock: %s %v", plan.SyscallName(c.Nr), c.Args)
	} else if fl := flock(c); fl.Type != unix.F_WRLCK || fl.Start != 4096 || fl.Len != 0 {
		t.Errorf("OFD lock: %+v", fl)
	}
	if c := got[3]; c.Nr != unix.SYS_FCNTL || c.Args[0] != 3 || c.Args[1] != unix.F_SETLEASE || c.Args[2] != unix.F_RDLCK {
		t.Errorf("lease: %s %v", plan.SyscallName(c.Nr), c.Args)
	}
	if last := prog.Calls[len(prog.Calls)-1]; last != got[3] {
		t.Errorf("program ends with %s, not with the locks", plan.SyscallName(last.Nr))
	}

	h.locks[testPid] = append(h.locks[testPid], lockEntry(2, unix.F_WRLCK, testPid, 9, 0, 0))
	if _, err := planTask(im.t, h, &origin{current: stub()}); err == nil || !strings.Contains(err.Error(), "fd 9") {
		t.Errorf("a lock on a descriptor the process lacks: %v", err)
	}
}

// TestLocksToTake: images with locks need --file-locks, and each lock a
// live process of the tree.
func TestLocksToTake(t *testing.T) {
	im := newImages()
	tree := &treeImages{dir: image.DirAt("/img"), root: im.t, tasks: []*taskImages{im.t}}
	if l, err := tree.locksToTake(false); err != nil || l != nil {
		t.Errorf("no locks: %v, %v", l, err)
	}
	tree.locks = files.Locks{testPid: {lockEntry(1, unix.F_WRLCK, testPid, 3, 0, 0)}}
	if _, err := tree.locksToTake(false); err == nil || !strings.Contains(err.Error(), "--file-locks") {
		t.Errorf("locks without --file-locks: %v", err)
	}
	if l, err := tree.locksToTake(true); err != nil || len(l[testPid]) != 1 {
		t.Errorf("locks with --file-locks: %v, %v", l, err)
	}
	tree.locks[77] = []*filelock.FileLockEntry{lockEntry(2, unix.F_WRLCK, 77, 3, 0, 0)}
	if _, err := tree.locksToTake(true); err == nil || !strings.Contains(err.Error(), "pid 77") {
		t.Errorf("a lock of a process not in the tree: %v", err)
	}
}

// TestPlanTaskBreakingLease: a lease being broken is taken as it was
// before the break (a write lease on a file open for writing), after
// the file's foreign owner is cleared so that the break amber makes
// signals the process itself; the break says what to open, which
// signal to take back and the owner to give back.
func TestPlanTaskBreakingLease(t *testing.T) {
	im := newImages()
	data := im.t.files[im.t.fds[3].GetId()].GetReg() // /var/data, O_RDWR|O_APPEND
	data.Fown.Pid, data.Fown.PidType, data.Fown.Signum = proto.Uint32(77), proto.Uint32(1), proto.Uint32(uint32(unix.SIGUSR1))
	h := im.host()
	h.locks = files.Locks{testPid: {lockEntry(8, unix.F_RDLCK|4, testPid, 3, 0, 0)}}
	p, err := planTask(im.t, h, &origin{current: stub()})
	if err != nil {
		t.Fatal(err)
	}
	fin := section(t, p.prog, sectionFinal)
	last := fin[len(fin)-2:]
	if c := last[0]; c.Nr != unix.SYS_FCNTL || c.Args[0] != 3 || c.Args[1] != unix.F_SETOWN || c.Args[2] != 0 {
		t.Errorf("before the lease: %s %v, want fcntl(3, F_SETOWN, 0)", plan.SyscallName(c.Nr), c.Args)
	}
	if c := last[1]; c.Nr != unix.SYS_FCNTL || c.Args[0] != 3 || c.Args[1] != unix.F_SETLEASE || c.Args[2] != unix.F_WRLCK {
		t.Errorf("lease: %s %v, want fcntl(3, F_SETLEASE, F_WRLCK)", plan.SyscallName(c.Nr), c.Args)
	}
	if len(p.breaks) != 1 {
		t.Fatalf("breaks %+v", p.breaks)
	}
	br := p.breaks[0]
	if br.Fd != 3 || br.Path != "/var/data" || br.Flags != unix.O_RDONLY || br.Signum != int(unix.SIGUSR1) || br.Owner == 0 {
		t.Errorf("break %+v", br)
	}
	word := func(addr uint64) uint64 { return binary.LittleEndian.Uint64(p.prog.Image[addr-p.prog.Base:]) }
	if word(br.Set) != 1<<(unix.SIGUSR1-1) || word(br.Timeout) != 0 || word(br.Timeout+8) != 0 || word(br.Owner) != 1|77<<32 {
		t.Errorf("set %#x, timeout %d.%d, owner %#x", word(br.Set), word(br.Timeout), word(br.Timeout+8), word(br.Owner))
	}
}
