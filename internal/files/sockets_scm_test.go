package files

import (
	"encoding/binary"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
	"amber/internal/sockets"
)

// scmOf decodes the descriptors and bytes of a planned sendmsg.
func scmOf(t *testing.T, p *plan.Program, c plan.Call) (data string, fds []int) {
	t.Helper()
	at := func(addr, n uint64) []byte {
		if addr < p.Base || addr+n > p.Base+uint64(len(p.Image)) {
			t.Fatalf("address %#x+%d outside the scratch area", addr, n)
		}
		return p.Image[addr-p.Base : addr-p.Base+n]
	}
	le := binary.LittleEndian
	hdr := at(c.Args[1], 56)
	iov := at(le.Uint64(hdr[16:]), 16)
	data = string(at(le.Uint64(iov), le.Uint64(iov[8:])))
	ctl := at(le.Uint64(hdr[32:]), le.Uint64(hdr[40:]))
	if le.Uint32(ctl[8:]) != unix.SOL_SOCKET || le.Uint32(ctl[12:]) != unix.SCM_RIGHTS {
		t.Fatalf("control message %x: not SCM_RIGHTS", ctl)
	}
	for i := 16; i < int(le.Uint64(ctl)); i += 4 {
		fds = append(fds, int(int32(le.Uint32(ctl[i:]))))
	}
	return data, fds
}

// A queued message carrying the read end of a pipe only it holds and a
// file the task holds at a number placed later is sent with descriptors
// of both: each file is made once, the pipe end parked above every
// target number (and closed at the end), the file taken from there to
// its number.
func TestPlanScmRights(t *testing.T) {
	l := newLayout()
	a := l.usk(10, unix.SOCK_SEQPACKET, tcpEstablished, 11, "")
	b := l.usk(11, unix.SOCK_SEQPACKET, tcpEstablished, 10, "")
	rd := l.pipeEnd(7, false, false)
	wr := l.pipeEnd(7, true, false)
	reg := l.reg("/data/f", unix.O_RDWR, 3)
	l.fd(3, a, false).fd(4, b, false).fd(5, reg, false).fd(6, wr, false)
	l.queue(a, "plain", "with fds")
	l.in.Extra.SkScm = map[uint32][][]uint32{a: {nil, {rd, reg}}}
	p, err := planFds(l)
	if err != nil {
		t.Fatal(err)
	}
	var sent [][]int
	opens, pipes := 0, 0
	for _, c := range p.prog.Calls[:p.fdsEnd] {
		switch c.Nr {
		case unix.SYS_SENDMSG:
			data, fds := scmOf(t, p.prog, c)
			if data != "with fds" {
				t.Errorf("sendmsg of %q, want the second message", data)
			}
			sent = append(sent, fds)
		case unix.SYS_OPENAT:
			if cString(t, p.prog, c.Args[1]) == "/data/f" {
				opens++
			}
		case unix.SYS_PIPE2:
			pipes++
		}
	}
	if len(sent) != 1 || len(sent[0]) != 2 || slices.ContainsFunc(sent[0], func(fd int) bool { return fd < 7 }) {
		t.Fatalf("sendmsg with descriptors %v: want one, of two descriptors parked above 6", sent)
	}
	if opens != 1 || pipes != 1 {
		t.Errorf("/data/f opened %d times, %d pipes made: want one each", opens, pipes)
	}
	for _, fd := range sent[0] {
		if _, parked := p.restored.Parked[fd]; !parked {
			t.Errorf("fd %d sent in flight is not parked (closed at the end): parked %v", fd, p.restored.Parked)
		}
	}
}

// Sockets in flight in each other's queues are refused, not a loop.
func TestPlanScmLoop(t *testing.T) {
	l := newLayout()
	a := l.usk(10, unix.SOCK_DGRAM, tcpEstablished, 11, "")
	b := l.usk(11, unix.SOCK_DGRAM, tcpEstablished, 10, "")
	c := l.usk(12, unix.SOCK_DGRAM, tcpEstablished, 13, "")
	l.usk(13, unix.SOCK_DGRAM, tcpEstablished, 12, "")
	l.fd(3, a, false).fd(4, b, false)
	l.queue(a, "c")
	l.queue(c, "a")
	l.in.Extra.SkScm = map[uint32][][]uint32{a: {{c}}, c: {{a}}}
	if _, err := planFds(l); err == nil || !strings.Contains(err.Error(), "loop") {
		t.Errorf("error %v, want one naming the loop", err)
	}
}

// The dump records the files in flight, one entry each (a file the task
// also holds is the same entry), names them in the message's packet,
// and sk-queues.img keeps them with their message.
func TestDumpScmRights(t *testing.T) {
	p := socketPair(t, unix.SOCK_DGRAM)
	var pp [2]int
	if err := unix.Pipe2(pp[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pp[0])
	defer unix.Close(pp[1])
	if err := unix.Sendmsg(p[1], []byte("plain"), nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendmsg(p[1], []byte("ends"), unix.UnixRights(pp[0], pp[1]), nil, 0); err != nil {
		t.Fatal(err)
	}
	d := NewDumper(NewTable(), DumpOptions{})
	defer d.ReleaseSockets(false)
	// The write end, also held "by the task" here, is the entry of the
	// one in flight.
	es := dumpOwnFds(t, d, p[0], p[1], pp[1])
	img := tempImages(t)
	if err := d.Finish(img); err != nil {
		t.Fatal(err)
	}
	msgs, scm, err := sockets.ReadSkQueues(img)
	if err != nil {
		t.Fatal(err)
	}
	id, pipeEnd := es[0].GetId(), es[2].GetId()
	if len(msgs[id]) != 2 || len(scm[id]) != 2 || scm[id][0] != nil || len(scm[id][1]) != 2 || scm[id][1][1] != pipeEnd {
		t.Fatalf("queue %q with descriptors %v: want the second message to carry two files, the second id %d", msgs[id], scm[id], pipeEnd)
	}
	for _, id := range scm[id][1] {
		if d.Table.entries[id-1].GetType().String() != "PIPE" {
			t.Errorf("file id %d: %v, want a pipe end", id, d.Table.entries[id-1])
		}
	}
	before := fdCount(t)
	d.ReleaseSockets(false)
	if after := fdCount(t); after != before-3 {
		t.Errorf("%d descriptors open after ReleaseSockets, %d before: want amber's two copies and its descriptor of their network namespace closed", after, before)
	}
}

// A pidfd of a task of the tree in flight refuses the dump: restore
// would send it before the tree exists. One of a dead process is dumped.
func TestDumpScmPidfd(t *testing.T) {
	self := os.Getpid()
	for _, tc := range []struct {
		name    string
		inTree  bool
		refused bool
	}{{"tree", true, true}, {"dead", false, false}} {
		p := socketPair(t, unix.SOCK_DGRAM)
		var cmd *exec.Cmd
		pid := self
		if !tc.inTree {
			cmd = exec.Command("/bin/true")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid = cmd.Process.Pid
		}
		pfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatal(err)
		}
		if cmd != nil {
			cmd.Wait() // dead and reaped: the pidfd is of a dead process
		}
		err = unix.Sendmsg(p[1], []byte("x"), unix.UnixRights(pfd), nil, 0)
		unix.Close(pfd)
		if err != nil {
			t.Fatal(err)
		}
		d := NewDumper(NewTable(), DumpOptions{})
		d.InTree = func(p int) bool { return p == self }
		_, err = dumpOwnFd(d, p[0])
		d.ReleaseSockets(false)
		if refused := err != nil && strings.Contains(err.Error(), "pidfd"); refused != tc.refused || (err != nil && !refused) {
			t.Errorf("%s: error %v, refused %v", tc.name, err, tc.refused)
		}
	}
}

// dumpOwnFd dumps descriptor fd of this process into d, as a task's.
func dumpOwnFd(d *Dumper, fd int) (*fdinfo.FdinfoEntry, error) {
	facts, err := gatherFds(os.Getpid(), -1, []int{fd})
	if err != nil {
		return nil, err
	}
	return d.dumpFd(os.Getpid(), facts[0])
}

// dumpOwnFds dumps descriptors fds of this process into d and returns
// their entries.
func dumpOwnFds(t *testing.T, d *Dumper, fds ...int) []*fdinfo.FdinfoEntry {
	t.Helper()
	var out []*fdinfo.FdinfoEntry
	for _, fd := range fds {
		e, err := dumpOwnFd(d, fd)
		if err != nil {
			t.Fatalf("fd %d: %v", fd, err)
		}
		out = append(out, e)
	}
	return out
}
