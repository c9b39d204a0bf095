package files

import (
	"os"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fown"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pipe"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/regfile"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

func TestFileFownFindsTheKindsEntry(t *testing.T) {
	fo := newFown()
	e := &fdinfo.FileEntry{Type: fdinfo.FdTypes_PIPE.Enum(), Id: proto.Uint32(1),
		Pipe: &pipe.PipeEntry{Id: proto.Uint32(1), PipeId: proto.Uint32(9), Flags: proto.Uint32(unix.O_ASYNC | unix.O_NONBLOCK), Fown: fo}}
	got, flags := fileFown(e)
	if got != fo || flags != unix.O_ASYNC|unix.O_NONBLOCK {
		t.Errorf("fileFown = %v, %#o", got, flags)
	}
	if got, _ := fileFown(nil); got != nil {
		t.Errorf("fileFown(nil) = %v", got)
	}
}

// TestFileFownRegular: a regular file's owner and flags are found
// without reflection, and agree with what the reflection finds.
func TestFileFownRegular(t *testing.T) {
	fo := newFown()
	e := &fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(1),
		Reg: &regfile.RegFileEntry{Id: proto.Uint32(1), Flags: proto.Uint32(unix.O_RDWR | unix.O_APPEND), Fown: fo}}
	got, flags := fileFown(e)
	if got != fo || flags != unix.O_RDWR|unix.O_APPEND {
		t.Errorf("fileFown = %v, %#o", got, flags)
	}
	if m := fileKind(e); m == nil || m.Interface() != e.Reg {
		t.Errorf("fileKind = %v, want the regular file's entry", m)
	}
}

// TestMergeFown: mergeFown does what proto.Merge does with an owner read
// with and without an owner (the uids only with one).
func TestMergeFown(t *testing.T) {
	reads := []*fown.FownEntry{
		{PidType: proto.Uint32(0), Pid: proto.Uint32(0), Signum: proto.Uint32(0)},
		{PidType: proto.Uint32(1), Pid: proto.Uint32(42), Signum: proto.Uint32(10), Uid: proto.Uint32(7), Euid: proto.Uint32(8)},
	}
	for _, read := range reads {
		want, got := newFown(), newFown()
		proto.Merge(want, read)
		mergeFown(got, read)
		if !proto.Equal(got, want) {
			t.Errorf("mergeFown(%v) = %v, want %v", read, got, want)
		}
	}
}

// TestReadFown reads the owner of a pipe of this process.
func TestReadFown(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := unix.FcntlInt(r.Fd(), unix.F_SETOWN, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(r.Fd(), unix.F_SETSIG, int(unix.SIGUSR2)); err != nil {
		t.Fatal(err)
	}
	fo := newFown()
	if err := readFown(int(r.Fd()), fo); err != nil {
		t.Fatal(err)
	}
	if fo.GetPid() != uint32(os.Getpid()) || fo.GetSignum() != uint32(unix.SIGUSR2) || fo.GetEuid() != uint32(os.Geteuid()) {
		t.Errorf("fown %v, want pid %d, signal %d, euid %d", fo, os.Getpid(), unix.SIGUSR2, os.Geteuid())
	}
}

// TestReadFownNoOwner: a file with a signal but no owner reads as
// having neither, as in CRIU (the signal is not read then).
func TestReadFownNoOwner(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := unix.FcntlInt(r.Fd(), unix.F_SETSIG, int(unix.SIGUSR2)); err != nil {
		t.Fatal(err)
	}
	fo := newFown()
	if err := readFown(int(r.Fd()), fo); err != nil {
		t.Fatal(err)
	}
	if fo.GetPid() != 0 || fo.GetSignum() != 0 || fo.Uid != nil && fo.GetUid() != 0 {
		t.Errorf("fown %v, want no owner and no signal", fo)
	}
}

func TestPlanOwners(t *testing.T) {
	fo := newFown()
	fo.Pid, fo.PidType, fo.Signum = proto.Uint32(42), proto.Uint32(1), proto.Uint32(10)
	b := plan.NewBuilder(0x10000000, plan.PageSize)
	PlanOwners(b, &Restored{owned: []ownedFd{{fd: 3, fown: fo, flags: unix.O_ASYNC | unix.O_RDONLY}}})
	calls := b.Finish().Calls
	var cmds []uint64
	for _, c := range calls {
		if c.Nr != unix.SYS_FCNTL || c.Args[0] != 3 {
			t.Fatalf("call %v", c)
		}
		cmds = append(cmds, c.Args[1])
	}
	if len(cmds) != 3 || cmds[0] != unix.F_SETSIG || cmds[1] != unix.F_SETOWN_EX || cmds[2] != unix.F_SETFL || calls[2].Args[2] != unix.O_ASYNC {
		t.Errorf("calls %v, want F_SETSIG, F_SETOWN_EX, F_SETFL O_ASYNC", calls)
	}
}

// TestDumpFownSkipsOPath: fcntl on an O_PATH file says EBADF; it has no
// owner to dump.
func TestDumpFownSkipsOPath(t *testing.T) {
	d := NewDumper(NewTable(), DumpOptions{})
	fo := newFown()
	d.Table.entries = append(d.Table.entries, &fdinfo.FileEntry{Type: fdinfo.FdTypes_PIPE.Enum(), Id: proto.Uint32(1),
		Pipe: &pipe.PipeEntry{Id: proto.Uint32(1), PipeId: proto.Uint32(9), Flags: proto.Uint32(unix.O_PATH), Fown: fo}})
	if err := d.dumpFown(-1, -1, 1, nil); err != nil {
		t.Errorf("O_PATH file: %v", err)
	}
}
