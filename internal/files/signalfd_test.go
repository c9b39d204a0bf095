package files

import (
	"os"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/signalfd"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/proc"
)

// signalfd adds a signalfd reading mask.
func (l *layout) signalfd(mask uint64, flags uint32) uint32 {
	return l.entry(fdinfo.FdTypes_SIGNALFD, func(e *fdinfo.FileEntry, id uint32) {
		e.Sgfd = &signalfd.SignalfdEntry{Id: proto.Uint32(id), Flags: proto.Uint32(flags), Fown: newFown(), Sigmask: proto.Uint64(mask)}
	})
}

// sigrtmin is the kernel's SIGRTMIN (glibc reserves the first two).
const sigrtmin = unix.Signal(32)

// sigbit is the bit of signal sig in a mask.
func sigbit(sig unix.Signal) uint64 { return 1 << (uint(sig) - 1) }

func TestAddSignalfdLive(t *testing.T) {
	var set unix.Sigset_t
	set.Val[0] = sigbit(unix.SIGUSR1) | sigbit(sigrtmin+3)
	fd, err := unix.Signalfd(-1, &set, unix.SFD_NONBLOCK|unix.SFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	info, err := proc.ReadFdinfo(os.Getpid(), fd)
	if err != nil {
		t.Fatal(err)
	}
	tab := NewTable()
	id, typ, err := tab.addSignalfd(info, info.Flags&^unix.O_CLOEXEC)
	if err != nil || typ != fdinfo.FdTypes_SIGNALFD {
		t.Fatalf("addSignalfd: %v %v", typ, err)
	}
	if e := tab.Entries()[id-1].GetSgfd(); e.GetSigmask() != set.Val[0] || e.GetFlags()&unix.O_NONBLOCK == 0 {
		t.Errorf("entry %v, want mask %#x and O_NONBLOCK", e, set.Val[0])
	}
	info.Extra["sigmask"] = "zz"
	if _, _, err := tab.addSignalfd(info, 0); err == nil || !strings.Contains(err.Error(), "sigmask") {
		t.Errorf("bad sigmask: error %v", err)
	}
}

func TestPlanSignalfd(t *testing.T) {
	l := newLayout()
	usr1 := l.signalfd(sigbit(unix.SIGUSR1), unix.O_RDWR|unix.O_NONBLOCK)
	rt := l.signalfd(sigbit(unix.SIGUSR2)|sigbit(sigrtmin+1), unix.O_RDWR)
	l.fd(5, usr1, true).fd(2, rt, false)
	s, _ := runFds(t, l, 2, 3)
	checkTable(t, s, l.in, l.known)
	if ev := simEventAt(t, s, 5, "signalfd"); ev.mask != sigbit(unix.SIGUSR1) || s.fds[5].f.flags != unix.O_NONBLOCK {
		t.Errorf("fd 5: %v flags %#x, want SIGUSR1, O_NONBLOCK", ev, s.fds[5].f.flags)
	}
	if ev := simEventAt(t, s, 2, "signalfd"); ev.mask != sigbit(unix.SIGUSR2)|sigbit(sigrtmin+1) || s.fds[2].f.flags != 0 {
		t.Errorf("fd 2: %v flags %#x, want SIGUSR2 and SIGRTMIN+1, blocking", ev, s.fds[2].f.flags)
	}
}
