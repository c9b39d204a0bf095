package files

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	filelock "github.com/checkpoint-restore/go-criu/v8/crit/images/file-lock"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/proc"
)

// fdinfoWithLocks is an fdinfo whose descriptor shows lines.
func fdinfoWithLocks(lines ...string) proc.FdInfo {
	fi := proc.FdInfo{}
	for _, l := range lines {
		fi.ExtraLines = append(fi.ExtraLines, "lock:\t"+l)
	}
	return fi
}

// TestNoteLocks: each lock once, POSIX ones by process, flock and OFD
// ones by open file and given to the process that took them.
func TestNoteLocks(t *testing.T) {
	d := NewDumper(NewTable(), DumpOptions{FileLocks: true})
	const parent, child = 100, 101
	posix := "1: POSIX  ADVISORY  WRITE 100 fe:00:7 0 9"
	childPosix := "2: POSIX  ADVISORY  WRITE 101 fe:00:7 50 59"
	flockByChild := "1: FLOCK  ADVISORY  WRITE 101 fe:00:8 0 EOF"
	ofd := "1: OFDLCK ADVISORY  READ -1 fe:00:9 4096 EOF"
	steps := []struct {
		pid, fd int
		id      uint32
		lines   []string
	}{
		{parent, 3, 1, []string{posix}},
		{parent, 4, 1, []string{posix}}, // a dup of fd 3
		{parent, 5, 2, []string{flockByChild}},
		{parent, 6, 3, []string{ofd}},
		{child, 3, 1, []string{childPosix}}, // inherited: its own POSIX locks only
		{child, 5, 2, []string{flockByChild}},
		{child, 6, 3, []string{ofd}},
		{child, 7, 4, []string{"2: -> FLOCK  ADVISORY  WRITE 101 fe:00:8 0 EOF"}}, // waiting: not held
	}
	for _, s := range steps {
		if err := d.noteLocks(s.pid, s.fd, s.id, "/f", fdinfoWithLocks(s.lines...)); err != nil {
			t.Fatal(err)
		}
	}
	want := []*filelock.FileLockEntry{
		{Flag: proto.Uint32(flPosix), Type: proto.Uint32(unix.F_WRLCK), Pid: proto.Int32(parent), Fd: proto.Int32(3), Start: proto.Int64(0), Len: proto.Int64(10)},
		{Flag: proto.Uint32(flFlock), Type: proto.Uint32(unix.F_WRLCK), Pid: proto.Int32(child), Fd: proto.Int32(5), Start: proto.Int64(0), Len: proto.Int64(0)},
		{Flag: proto.Uint32(flOFD), Type: proto.Uint32(unix.F_RDLCK), Pid: proto.Int32(parent), Fd: proto.Int32(6), Start: proto.Int64(4096), Len: proto.Int64(0)},
		{Flag: proto.Uint32(flPosix), Type: proto.Uint32(unix.F_WRLCK), Pid: proto.Int32(child), Fd: proto.Int32(3), Start: proto.Int64(50), Len: proto.Int64(10)},
	}
	if len(d.locks.entries) != len(want) {
		t.Fatalf("entries %v, want %v", d.locks.entries, want)
	}
	for i, e := range d.locks.entries {
		if !proto.Equal(e, want[i]) {
			t.Errorf("entry %d: %v, want %v", i, e, want[i])
		}
	}
	if !d.locks.holds(proc.Lock{Kind: "POSIX", Type: "WRITE", Pid: child, Dev: unix.Mkdev(0xfe, 0), Ino: 7, Start: 50, End: 59}) {
		t.Error("the child's POSIX lock is not found")
	}
	if d.locks.holds(proc.Lock{Kind: "POSIX", Type: "WRITE", Pid: child, Dev: unix.Mkdev(0xfe, 0), Ino: 7, Start: 0, End: 9}) {
		t.Error("the parent's POSIX lock is found as the child's")
	}
}

// TestNoteLocksSharedTable: a POSIX lock seen through a descriptor table
// that a child shares (CLONE_FILES) and took the lock through goes to
// the child if it is in the tree, else stays with the process seen.
func TestNoteLocksSharedTable(t *testing.T) {
	d := NewDumper(NewTable(), DumpOptions{FileLocks: true})
	for _, line := range []string{"1: POSIX  ADVISORY  READ 101 fe:00:7 0 EOF", "2: POSIX  ADVISORY  READ 555 fe:00:8 0 EOF"} {
		if err := d.noteLocks(100, 3, 1, "/f", fdinfoWithLocks(line)); err != nil {
			t.Fatal(err)
		}
	}
	d.locks.ownPosix(map[int]bool{100: true, 101: true})
	if got := []int32{d.locks.entries[0].GetPid(), d.locks.entries[1].GetPid()}; got[0] != 101 || got[1] != 100 {
		t.Errorf("owners %v, want [101 100]", got)
	}
	if !d.locks.holds(proc.Lock{Kind: "POSIX", Type: "READ", Pid: 101, Dev: unix.Mkdev(0xfe, 0), Ino: 7, Start: 0, End: proc.ToEOF}) {
		t.Error("the child's lock, as /proc/locks shows it, is not found")
	}
}

// TestNoteLocksRefused: without --file-locks a lock refuses the dump,
// naming it and the option; a lease being broken to write (which no
// break does) is refused even with it.
func TestNoteLocksRefused(t *testing.T) {
	d := NewDumper(NewTable(), DumpOptions{})
	err := d.noteLocks(1, 3, 1, "/srv/db", fdinfoWithLocks("1: POSIX  ADVISORY  READ 1 fe:00:7 100 149"))
	if err == nil || !strings.Contains(err.Error(), "a POSIX read lock (bytes 100-149) on /srv/db") || !strings.Contains(err.Error(), "--file-locks") {
		t.Errorf("POSIX lock without --file-locks: %v", err)
	}
	if err := d.noteLocks(1, 3, 1, "/srv/db", fdinfoWithLocks()); err != nil {
		t.Errorf("no lock: %v", err)
	}
	d = NewDumper(NewTable(), DumpOptions{FileLocks: true})
	err = d.noteLocks(1, 3, 1, "/srv/db", fdinfoWithLocks("1: LEASE  BREAKING  WRITE 1 fe:00:7 0 EOF"))
	if err == nil || !strings.Contains(err.Error(), "WRITE lease in state BREAKING") {
		t.Errorf("lease being broken to write: %v", err)
	}
	if err := d.noteLocks(1, 4, 2, "/srv/db2", fdinfoWithLocks("1: LEASE  BREAKING  UNLCK 1 fe:00:8 0 EOF")); err != nil {
		t.Errorf("lease being broken: %v", err)
	}
	if err := d.noteLocks(1, 3, 1, "/srv/db", fdinfoWithLocks("1: LEASE  ACTIVE    WRITE 1 fe:00:7 0 EOF")); err != nil {
		t.Errorf("lease: %v", err)
	}
	if e := d.locks.entries[0]; e.GetFlag() != flLease || e.GetType() != unix.F_UNLCK|leaseBreaking {
		t.Errorf("lease being broken: entry %v", e)
	}
	if e := d.locks.entries[1]; e.GetFlag() != flLease || e.GetType() != unix.F_WRLCK {
		t.Errorf("lease entry %v", e)
	}
}

// TestLocksImage: filelocks.img as written is read back; entries amber
// cannot take again are refused naming the entry.
func TestLocksImage(t *testing.T) {
	dir, err := image.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if l, err := ReadLocks(dir); err != nil || l.Len() != 0 {
		t.Fatalf("no image: %v, %v", l, err)
	}
	d := NewDumper(NewTable(), DumpOptions{FileLocks: true})
	for i, line := range []string{"1: FLOCK  ADVISORY  READ 7 fe:00:8 0 EOF", "1: POSIX  ADVISORY  WRITE 8 fe:00:9 1 1"} {
		if err := d.noteLocks(7+i, 3, uint32(1+i), "/f", fdinfoWithLocks(line)); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.locks.write(dir, nil); err != nil {
		t.Fatal(err)
	}
	l, err := ReadLocks(dir)
	if err != nil || l.Len() != 2 || l[8][0].GetLen() != 1 || l[7][0].GetFlag() != flFlock {
		t.Fatalf("read back: %v, %v", l, err)
	}
	for _, bad := range []*filelock.FileLockEntry{
		{Flag: proto.Uint32(flLease), Type: proto.Uint32(unix.F_WRLCK | leaseBreaking), Pid: proto.Int32(1), Fd: proto.Int32(3), Start: proto.Int64(0), Len: proto.Int64(0)},
		{Flag: proto.Uint32(16), Type: proto.Uint32(0), Pid: proto.Int32(1), Fd: proto.Int32(3), Start: proto.Int64(0), Len: proto.Int64(0)},
		{Flag: proto.Uint32(flPosix), Type: proto.Uint32(unix.F_UNLCK), Pid: proto.Int32(1), Fd: proto.Int32(3), Start: proto.Int64(0), Len: proto.Int64(0)},
		{Flag: proto.Uint32(flPosix), Type: proto.Uint32(0), Pid: proto.Int32(1), Fd: proto.Int32(3), Start: proto.Int64(-1), Len: proto.Int64(0)},
	} {
		if err := image.WriteFile(dir.FileLocksPath(), image.FileLocks, bad); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadLocks(dir); err == nil || !strings.Contains(err.Error(), "filelocks.img: entry 0") {
			t.Errorf("entry %v: %v", bad, err)
		}
	}
}

// TestCheckLocksUnseen: a POSIX lock this process holds that no
// descriptor showed is refused, whether /proc/locks is read at the check
// or ahead of it (ReadLocksAhead), and passes once its descriptor showed
// it.
func TestCheckLocksUnseen(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "locked"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 10}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("1: POSIX  ADVISORY  WRITE %d %02x:%02x:%d 0 9", self, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	for _, ahead := range []bool{false, true} {
		d := NewDumper(NewTable(), DumpOptions{FileLocks: true})
		if ahead {
			d.ReadLocksAhead()
		}
		err := d.CheckLocks(map[int]bool{self: true})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("pid %d holds a POSIX WRITE lock", self)) {
			t.Fatalf("ahead %v: a lock no descriptor showed: %v, want refused", ahead, err)
		}
		d = NewDumper(NewTable(), DumpOptions{FileLocks: true})
		if ahead {
			d.ReadLocksAhead()
		}
		if err := d.noteLocks(self, int(f.Fd()), 1, f.Name(), fdinfoWithLocks(line)); err != nil {
			t.Fatal(err)
		}
		if err := d.CheckLocks(map[int]bool{self: true}); err != nil {
			t.Fatalf("ahead %v: a lock its descriptor showed: %v", ahead, err)
		}
	}
}
