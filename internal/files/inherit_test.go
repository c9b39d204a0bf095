package files

import (
	"slices"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	sk "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-unix"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

// TestInheritKey: the keys are CRIU's, and a kind of file without one
// has "".
func TestInheritKey(t *testing.T) {
	l := newLayout()
	pipeFile := l.in.Files[l.pipeEnd(4242, true, false)]
	reg := l.in.Files[l.reg("/tmp/log", unix.O_WRONLY, 0)]
	root := l.in.Files[l.reg("/", unix.O_RDONLY, 0)]
	usk := &fdinfo.FileEntry{Type: fdinfo.FdTypes_UNIXSK.Enum(), Usk: &sk.UnixSkEntry{Ino: proto.Uint32(77)}}
	ev := &fdinfo.FileEntry{Type: fdinfo.FdTypes_EVENTFD.Enum()}
	for _, c := range []struct {
		e    *fdinfo.FileEntry
		want string
	}{{pipeFile, "pipe:[4242]"}, {reg, "tmp/log"}, {root, "."}, {usk, "socket:[77]"}, {ev, ""}} {
		if got := InheritKey(c.e); got != c.want {
			t.Errorf("InheritKey(%v) = %q, want %q", c.e.GetType(), got, c.want)
		}
	}
	unused := UnusedInheritKeys(map[string]int{"pipe:[4242]": 3, "pipe:[1]": 4, "tmp/log": 5, "/tmp/log": 6}, l.in.Files)
	if want := []string{"/tmp/log", "pipe:[1]"}; !slices.Equal(unused, want) {
		t.Errorf("UnusedInheritKeys = %q, want %q", unused, want)
	}
	if unused := UnusedInheritKeys(nil, l.in.Files); unused != nil {
		t.Errorf("UnusedInheritKeys with no --inherit-fd = %q, want none", unused)
	}
	// Every key used, the files after the last one found unread: none is
	// unused.
	if unused := UnusedInheritKeys(map[string]int{"pipe:[4242]": 3, "tmp/log": 5, ".": 7}, l.in.Files); unused != nil {
		t.Errorf("UnusedInheritKeys with every key used = %q, want none", unused)
	}
}

// TestPlanFdsInherit: a pipe --inherit-fd names is not made (no pipe2,
// no refill): the task takes amber's descriptor, through the pidfd it
// holds, and opens it again with the dumped file's flags; a regular
// file is amber's very file, not moved to the dumped position; the
// pidfd is closed once the table is made. Without a pidfd, the task
// takes by amber's PID.
func TestPlanFdsInherit(t *testing.T) {
	l := newLayout()
	l.fd(1, l.pipeEnd(99, true, true), false)
	l.fd(2, l.reg("/tmp/log", unix.O_WRONLY, 42), false)
	l.fd(3, l.reg("/other", unix.O_RDONLY, 0), false)
	l.in.Pipes[99] = []byte("not refilled")
	l.in.Inherit = map[string]int{"pipe:[99]": 7, "tmp/log": 8}
	l.in.AmberPidfd = 3 // where the stub's copy lands: it is a target too
	b := plan.NewBuilder(testBase, 0)
	b.CloseAllBut(3)
	if _, err := PlanFds(b, l.in); err != nil {
		t.Fatal(err)
	}
	prog := b.Finish()
	text := prog.String()
	var getfds [][2]uint64
	for _, c := range prog.Calls {
		switch c.Nr {
		case unix.SYS_PIPE2, unix.SYS_WRITE:
			t.Errorf("the inherited pipe is made or refilled:\n%s", text)
		case unix.SYS_PIDFD_GETFD:
			getfds = append(getfds, [2]uint64{c.Args[0], c.Args[1]})
		}
	}
	if len(getfds) != 2 || getfds[0][0] < 4 || getfds[0][1] != 7 || getfds[1][1] != 8 {
		t.Errorf("pidfd_getfd calls %v, want amber's fds 7 then 8 through the pidfd moved above fd 3:\n%s", getfds, text)
	}
	if strings.Contains(text, "pidfd_open") {
		t.Errorf("a task holding a pidfd of amber opens another:\n%s", text)
	}
	if !strings.Contains(text, "opened again with its flags") || strings.Contains(text, "seek /tmp/log") {
		t.Errorf("the pipe is not opened again, or the inherited file is moved:\n%s", text)
	}
	last := prog.Calls[len(prog.Calls)-1]
	if last.Nr != unix.SYS_CLOSE || last.Args[0] != getfds[0][0] {
		t.Errorf("the pidfd of amber is not closed last:\n%s", text)
	}
	l.in.AmberPidfd = 0
	p, err := planFds(l)
	if err != nil {
		t.Fatal(err)
	}
	if text := p.prog.String(); strings.Count(text, "pidfd_open pid 4242") != 2 {
		t.Errorf("without a pidfd, want each file taken by amber's PID:\n%s", text)
	}
}

// TestPlanFdsInheritHidden: a task in a pid namespace where amber's PID
// names nothing, and without a pidfd of amber, cannot take an inherited
// file: the plan fails naming it.
func TestPlanFdsInheritHidden(t *testing.T) {
	l := newLayout()
	l.fd(1, l.pipeEnd(99, true, false), false)
	l.in.Inherit = map[string]int{"pipe:[99]": 7}
	l.in.AmberHidden = true
	_, err := planFds(l)
	if err == nil || !strings.Contains(err.Error(), "pipe:[99]") {
		t.Fatalf("err %v, want one naming pipe:[99]", err)
	}
}
