package files

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pidfd"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
	"amber/internal/proc"
)

// pidfd adds a pidfd of nspid (-1: a dead process) with pidfs inode ino.
func (l *layout) pidfd(nspid int32, ino, flags uint32) uint32 {
	id := l.nextID()
	l.in.Files[id] = &fdinfo.FileEntry{Type: fdinfo.FdTypes_PIDFD.Enum(), Id: proto.Uint32(id), Pidfd: &pidfd.PidfdEntry{
		Id: proto.Uint32(id), Ino: proto.Uint32(ino), Flags: proto.Uint32(flags), Nspid: proto.Int32(nspid), Fown: newFown(),
	}}
	return id
}

// A pidfd of a task of the tree is opened with its flags in the final
// section (a dup for the same file twice); one of a dead process is taken
// from amber in the main plan.
func TestPlanPidfds(t *testing.T) {
	l := newLayout()
	child := l.pidfd(42, 7, unix.O_NONBLOCK)
	thread := l.pidfd(43, 8, unix.O_EXCL)
	dead := l.pidfd(-1, 9, 0)
	l.fd(3, child, false).fd(4, thread, true).fd(5, dead, false).fd(6, child, true)
	l.in.TreePid = func(pid int) bool { return pid == 42 || pid == 43 }
	l.in.DeadPidfds = map[uint32]int{dead: 77}
	b := plan.NewBuilder(testBase, 0)
	r, err := PlanFds(b, l.in)
	if err != nil {
		t.Fatal(err)
	}
	if !r.IsLate(3) || !r.IsLate(4) || !r.IsLate(6) || r.IsLate(5) {
		t.Fatalf("late files %+v: want fds 3, 4 and 6", r.Late)
	}
	main := b.Len()
	PlanLate(b, r)
	p := b.Finish()
	var taken []string
	for _, c := range p.Calls[:main] {
		switch c.Nr {
		case unix.SYS_PIDFD_OPEN:
			taken = append(taken, fmt.Sprint("pidfd_open ", c.Args[0]))
		case unix.SYS_PIDFD_GETFD:
			taken = append(taken, fmt.Sprint("pidfd_getfd ", c.Args[1]))
		}
	}
	if want := []string{fmt.Sprint("pidfd_open ", amberPid), "pidfd_getfd 77"}; !slices.Equal(taken, want) {
		t.Errorf("main plan %q, want %q (amber's pid, then its fd)", taken, want)
	}
	var late []string
	for _, c := range p.Calls[main:] {
		switch c.Nr {
		case unix.SYS_PIDFD_OPEN:
			late = append(late, formatArgs(c))
		case unix.SYS_DUP3:
			late = append(late, "dup3 "+formatArgs(c))
		}
	}
	want := []string{"42 2048", "dup3 0 3 0", "43 128", "dup3 0 4 524288", "dup3 3 6 524288"}
	if !slices.Equal(late, want) {
		t.Errorf("late plan %q, want %q", late, want)
	}
}

// formatArgs prints c's first arguments: two for pidfd_open and
// pidfd_getfd, three for others.
func formatArgs(c plan.Call) string {
	n := 3
	if c.Nr == unix.SYS_PIDFD_OPEN || c.Nr == unix.SYS_PIDFD_GETFD {
		n = 2
	}
	return strings.Trim(fmt.Sprint(c.Args[:n]), "[]")
}

// A pidfd of a live process outside the tree, or of a dead one amber made
// none for, is refused with its file id.
func TestPlanPidfdRefused(t *testing.T) {
	for name, nspid := range map[string]int32{"outside": 99, "dead": -1} {
		l := newLayout()
		id := l.pidfd(nspid, 7, 0)
		l.fd(3, id, false)
		l.in.TreePid = func(pid int) bool { return pid == 42 }
		_, err := PlanFds(plan.NewBuilder(testBase, 0), l.in)
		if err == nil || !strings.Contains(err.Error(), "file id 1") {
			t.Errorf("%s: error %v, want one naming file id 1", name, err)
		}
	}
}

// OpenDeadPidfds makes one process per dumped pidfs inode: the pidfds
// that shared one share one again, each with its flags, all dead.
func TestOpenDeadPidfds(t *testing.T) {
	l := newLayout()
	a1 := l.pidfd(-1, 100, 0)
	a2 := l.pidfd(-1, 100, unix.O_NONBLOCK)
	b := l.pidfd(-1, 200, unix.O_EXCL)
	l.pidfd(42, 300, 0) // live: none made
	started := 0
	d, err := OpenDeadPidfds(l.in.Files, func() (int, func(), error) {
		cmd := exec.Command("/bin/sleep", "100")
		if err := cmd.Start(); err != nil {
			return 0, nil, err
		}
		started++
		return cmd.Process.Pid, func() { cmd.Process.Kill(); cmd.Wait() }, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if started != 2 || len(d.Fds) != 3 {
		t.Fatalf("%d processes, pidfds %v: want 2 processes and pidfds for ids %d, %d, %d", started, d.Fds, a1, a2, b)
	}
	ino := func(id uint32) uint64 {
		var st unix.Stat_t
		if err := unix.Fstat(d.Fds[id], &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	if ino(a1) != ino(a2) || ino(a1) == ino(b) {
		t.Errorf("inodes %d %d %d: want the first two equal, the third another", ino(a1), ino(a2), ino(b))
	}
	for id, flags := range map[uint32]uint32{a1: 0, a2: unix.O_NONBLOCK, b: unix.O_EXCL} {
		info, err := proc.ReadFdinfo(os.Getpid(), d.Fds[id])
		if err != nil {
			t.Fatal(err)
		}
		if info.Flags&pidfdFlags != flags || info.Extra["Pid"] != "-1" {
			t.Errorf("file id %d: flags %#o Pid %s, want flags %#o and a dead process", id, info.Flags, info.Extra["Pid"], flags)
		}
	}
}

// The dump records a pidfd's innermost PID, inode and flags (without the
// access mode), and refuses one of a process outside the tree.
func TestAddPidfd(t *testing.T) {
	d := NewDumper(NewTable(), DumpOptions{})
	d.InTree = func(pid int) bool { return pid == 42 }
	info := func(pid, nspid string) proc.FdInfo {
		return proc.FdInfo{Ino: 5000, Extra: map[string]string{"Pid": pid, "NSpid": nspid}}
	}
	id, _, err := d.addPidfd(info("42", "42\t7"), unix.O_RDWR|unix.O_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	e := d.Table.entries[id-1].GetPidfd()
	if e.GetNspid() != 7 || e.GetIno() != 5000 || e.GetFlags() != unix.O_NONBLOCK {
		t.Errorf("entry %v: want nspid 7, ino 5000, flags O_NONBLOCK", e)
	}
	if _, _, err := d.addPidfd(info("-1", "-1"), unix.O_RDWR); err != nil {
		t.Errorf("dead: %v", err)
	}
	if _, _, err := d.addPidfd(info("43", "43"), unix.O_RDWR); err == nil || !strings.Contains(err.Error(), "pid 43") {
		t.Errorf("outside the tree: error %v, want one naming pid 43", err)
	}
	if _, _, err := d.addPidfd(proc.FdInfo{}, unix.O_RDWR); err == nil {
		t.Errorf("no Pid line: no error")
	}
}

// A task in a pid namespace of its own, where amber has no PID and that
// holds no pidfd of amber, opens a dead process's pidfd again through
// amber's /proc, with its PIDFD_NONBLOCK.
func TestPlanDeadPidfdHidden(t *testing.T) {
	l := newLayout()
	dead := l.pidfd(-1, 9, unix.O_NONBLOCK)
	l.fd(3, dead, false)
	l.in.DeadPidfds = map[uint32]int{dead: 77}
	l.in.AmberHidden = true
	b := plan.NewBuilder(testBase, 0)
	if _, err := PlanFds(b, l.in); err != nil {
		t.Fatal(err)
	}
	p := b.Finish()
	var calls []string
	for _, c := range p.Calls {
		switch c.Nr {
		case unix.SYS_OPENAT:
			calls = append(calls, fmt.Sprintf("open %s %#o", cString(t, p, c.Args[1]), c.Args[2]))
		case unix.SYS_PIDFD_OPEN, unix.SYS_PIDFD_GETFD:
			calls = append(calls, plan.SyscallName(c.Nr))
		}
	}
	want := []string{fmt.Sprintf("open /proc/%d/fd/77 %#o", amberPid, unix.O_RDWR|unix.O_NONBLOCK)}
	if !slices.Equal(calls, want) {
		t.Errorf("plan %q, want %q", calls, want)
	}
}
