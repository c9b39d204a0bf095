package files

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	skopts "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-opts"
	skunix "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-unix"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

// usk adds a unix socket of inode ino to l; change edits its entry.
func (l *layout) usk(ino uint32, typ, state uint32, peer uint32, name string, change ...func(*skunix.UnixSkEntry)) uint32 {
	return l.entry(fdinfo.FdTypes_UNIXSK, func(e *fdinfo.FileEntry, id uint32) {
		ue := &skunix.UnixSkEntry{
			Id: proto.Uint32(id), Ino: proto.Uint32(ino), Type: proto.Uint32(typ), State: proto.Uint32(state),
			Flags: proto.Uint32(unix.O_RDWR), Uflags: proto.Uint32(0), Backlog: proto.Uint32(0), Peer: proto.Uint32(peer),
			Fown: newFown(), Name: []byte(name), Shutdown: skopts.SkShutdown_NONE.Enum(),
			Opts: &skopts.SkOptsEntry{SoSndbuf: proto.Uint32(212992), SoRcvbuf: proto.Uint32(212992),
				SoSndTmoSec: proto.Uint64(0), SoSndTmoUsec: proto.Uint64(0), SoRcvTmoSec: proto.Uint64(0), SoRcvTmoUsec: proto.Uint64(0)},
		}
		if len(name) > 0 && name[0] != 0 && name[0] != '/' {
			ue.NameDir = proto.String("/srv")
		}
		for _, c := range change {
			c(ue)
		}
		e.Usk = ue
	})
}

// queue gives socket file id messages waiting in its receive queue.
func (l *layout) queue(id uint32, msgs ...string) {
	if l.in.Extra == nil {
		l.in.Extra = &Extra{}
	}
	if l.in.Extra.SkQueues == nil {
		l.in.Extra.SkQueues = map[uint32][][]byte{}
	}
	for _, m := range msgs {
		l.in.Extra.SkQueues[id] = append(l.in.Extra.SkQueues[id], []byte(m))
	}
}

// withModes makes l's stat report paths of modes as existing with that
// file type.
func (l *layout) withModes(modes map[string]fs.FileMode) {
	stat := l.in.Stat
	l.in.Stat = func(p string) (os.FileInfo, error) {
		if m, ok := modes[p]; ok {
			return fakeInfo{name: p, mode: m}, nil
		}
		return stat(p)
	}
}

// runWorld plans l and runs the plan in a simulated task whose world is
// w, checking what PlanFds leaves; it returns the task.
func runWorld(t *testing.T, l *layout, w *simWorld) (*fdSim, *plan.Program) {
	t.Helper()
	p, err := planFds(l)
	if err != nil {
		t.Fatalf("PlanFds: %v", err)
	}
	s := newFdSim(l.start)
	s.world = w
	for pid, table := range l.others {
		s.others[pid] = table
	}
	runPlanned(t, s, l, p)
	return s, p.prog
}

func newWorld() *simWorld {
	return &simWorld{cwd: "/home", names: map[string]*simSock{}, nodes: map[string]*simNode{}}
}

// sockOf is the socket at target fd of s.
func sockOf(t *testing.T, s *fdSim, fd int) (*simSock, *simFile) {
	t.Helper()
	d, ok := s.fds[fd]
	if !ok || d.f.sk == nil {
		t.Fatalf("fd %d is no socket:\n%s", fd, s.dump())
	}
	return d.f.sk, d.f
}

// checkSock verifies the socket at fd against its image entry: type,
// name, listening, queue, shutdown, status flags and options.
func checkSock(t *testing.T, s *fdSim, l *layout, fd int) *simSock {
	t.Helper()
	k, f := sockOf(t, s, fd)
	var ue *skunix.UnixSkEntry
	for _, e := range l.in.Fds {
		if int(e.GetFd()) == fd {
			ue = l.in.Files[e.GetId()].GetUsk()
		}
	}
	if k.typ != int(ue.GetType()) {
		t.Errorf("fd %d: type %d, want %d", fd, k.typ, ue.GetType())
	}
	named := len(ue.GetName()) > 0 && !(ue.GetType() != unix.SOCK_DGRAM && ue.GetState() == tcpEstablished)
	if want := simNameOf(ue); named && k.name != want || !named && k.name != "" {
		t.Errorf("fd %d: bound to %q, want %q (named %v)", fd, k.name, want, named)
	}
	if k.listening != (ue.GetState() == tcpListen) || (k.listening && k.backlog != int(ue.GetBacklog())) {
		t.Errorf("fd %d: listening %v backlog %d, want state %d backlog %d", fd, k.listening, k.backlog, ue.GetState(), ue.GetBacklog())
	}
	var want [][]byte
	if l.in.Extra != nil {
		want = l.in.Extra.SkQueues[ue.GetId()]
	}
	if fmt.Sprintf("%q", k.queue) != fmt.Sprintf("%q", want) {
		t.Errorf("fd %d: queue %q, want %q", fd, k.queue, want)
	}
	if k.shutdown != int(ue.GetShutdown()) && !(k.shutdown == 3 && l.in.Files != nil && k.peer != nil && k.peer.dead) {
		t.Errorf("fd %d: shutdown %d, want %d", fd, k.shutdown, ue.GetShutdown())
	}
	if f.flags&unix.O_NONBLOCK != uint64(ue.GetFlags()&unix.O_NONBLOCK) {
		t.Errorf("fd %d: status flags %#x, want O_NONBLOCK as in %#x", fd, f.flags, ue.GetFlags())
	}
	if v := k.opts[unix.SO_SNDBUFFORCE]; len(v) != 4 || binary.LittleEndian.Uint32(v) != ue.GetOpts().GetSoSndbuf()/2 {
		t.Errorf("fd %d: SO_SNDBUFFORCE %x, want %d", fd, v, ue.GetOpts().GetSoSndbuf()/2)
	}
	if _, ok := k.opts[unix.SO_PASSCRED]; ok != ue.GetOpts().GetSoPasscred() {
		t.Errorf("fd %d: SO_PASSCRED set %v, want %v", fd, ok, ue.GetOpts().GetSoPasscred())
	}
	return k
}

// simNameOf is the name an entry binds to, as simWorld keys it.
func simNameOf(ue *skunix.UnixSkEntry) string {
	n := ue.GetName()
	switch {
	case len(n) == 0:
		return ""
	case n[0] == 0:
		return "@" + string(n[1:])
	case n[0] == '/':
		return strings.TrimRight(string(n), "\x00")
	}
	return path.Join(ue.GetNameDir(), strings.TrimRight(string(n), "\x00"))
}

func TestPlanUnixSocketpair(t *testing.T) {
	for _, typ := range []uint32{unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET} {
		t.Run(fmt.Sprint("type ", typ), func(t *testing.T) {
			l := newLayout()
			a := l.usk(10, typ, tcpEstablished, 11, "", func(e *skunix.UnixSkEntry) {
				e.Flags = proto.Uint32(unix.O_RDWR | unix.O_NONBLOCK)
				e.Opts.SoPasscred = proto.Bool(true)
				e.Shutdown = skopts.SkShutdown_WRITE.Enum()
			})
			b := l.usk(11, typ, tcpEstablished, 10, "", func(e *skunix.UnixSkEntry) {
				e.Opts.SoSndbuf = proto.Uint32(100000)
				if typ != unix.SOCK_DGRAM {
					e.Shutdown = skopts.SkShutdown_READ.Enum()
				}
			})
			l.queue(a, "to a 1", "", "to a 2")
			l.queue(b, "to b")
			l.fd(3, a, false).fd(7, b, true)
			s, _ := runWorld(t, l, newWorld())
			ka, kb := checkSock(t, s, l, 3), checkSock(t, s, l, 7)
			if ka.peer != kb || kb.peer != ka {
				t.Errorf("fds 3 and 7 are not each other's peer")
			}
			checkTable(t, s, l.in, l.known)
		})
	}
}

func TestPlanUnixListener(t *testing.T) {
	l := newLayout()
	lsk := l.usk(20, unix.SOCK_STREAM, tcpListen, 0, "app.sock\x00", func(e *skunix.UnixSkEntry) {
		e.Backlog = proto.Uint32(5)
		e.FilePerms = &skunix.FilePermsEntry{Mode: proto.Uint32(unix.S_IFSOCK | 0o604), Uid: proto.Uint32(7), Gid: proto.Uint32(8)}
	})
	c1 := l.usk(21, unix.SOCK_STREAM, tcpEstablished, 22, "")
	a1 := l.usk(22, unix.SOCK_STREAM, tcpEstablished, 21, "app.sock\x00")
	c2 := l.usk(23, unix.SOCK_STREAM, tcpEstablished, 20, "") // not accepted yet
	l.queue(c1, "from a1")
	l.queue(a1, "from c1")
	l.fd(3, lsk, false).fd(4, c1, false).fd(5, a1, false).fd(6, c2, false)
	l.withModes(map[string]fs.FileMode{"/srv/app.sock": fs.ModeSocket, "/srv": fs.ModeDir})
	w := newWorld()
	w.nodes["/srv/app.sock"] = &simNode{kind: "socket", linked: true} // left by the dumped tree
	s, p := runWorld(t, l, w)
	kl := checkSock(t, s, l, 3)
	k1, ka1, k2 := checkSock(t, s, l, 4), checkSock(t, s, l, 5), checkSock(t, s, l, 6)
	if k1.peer != ka1 || ka1.peer != k1 {
		t.Errorf("the accepted connection is not a pair")
	}
	if k2.peer != kl || len(kl.pending) != 1 || kl.pending[0] != k2 {
		t.Errorf("the connection not accepted yet is not in the listener's backlog")
	}
	n := w.nodes["/srv/app.sock"]
	if n == nil || n.mode != 0o604 || n.uid != 7 || n.gid != 8 {
		t.Errorf("socket file %+v, want mode 0604 owner 7:8", n)
	}
	if w.cwd != "/home" {
		t.Errorf("cwd %s after binding a relative name, want /home back", w.cwd)
	}
	if !strings.Contains(p.String(), "remove stale socket file /srv/app.sock") {
		t.Errorf("the stale socket file is not removed:\n%s", p)
	}
}

func TestPlanUnixDgramByName(t *testing.T) {
	l := newLayout()
	srv := l.usk(30, unix.SOCK_DGRAM, tcpEstablished, 0, "\x00srv")
	cli := l.usk(31, unix.SOCK_DGRAM, tcpEstablished, 30, "")
	anon := l.usk(32, unix.SOCK_DGRAM, tcpClose, 0, "")
	l.queue(srv, "one", "two", "three")
	l.fd(3, srv, false).fd(4, cli, false).fd(5, anon, false)
	s, _ := runWorld(t, l, newWorld())
	ks, kc := checkSock(t, s, l, 3), checkSock(t, s, l, 4)
	checkSock(t, s, l, 5)
	if kc.peer != ks || ks.peer != nil {
		t.Errorf("cli's peer %v, srv's %v: want cli connected to srv only", kc.peer, ks.peer)
	}
}

func TestPlanUnixSemiClosed(t *testing.T) {
	l := newLayout()
	st := l.usk(40, unix.SOCK_STREAM, tcpEstablished, 0, "", func(e *skunix.UnixSkEntry) {
		e.Shutdown = skopts.SkShutdown_BOTH.Enum()
	})
	dg := l.usk(41, unix.SOCK_DGRAM, tcpEstablished, 0, "")
	l.queue(st, "last words")
	l.queue(dg, "a", "b")
	l.fd(3, st, false).fd(4, dg, false)
	s, _ := runWorld(t, l, newWorld())
	for _, fd := range []int{3, 4} {
		if k := checkSock(t, s, l, fd); k.peer == nil || !k.peer.dead {
			t.Errorf("fd %d: peer %v, want a closed one", fd, k.peer)
		}
	}
	if len(s.fds) != 2 {
		t.Errorf("the other ends of the pairs stayed open:\n%s", s.dump())
	}
}

// TestPlanUnixAcrossTasks: the ends of a pair live in two tasks. The
// first makes both and parks the other; the second takes it.
func TestPlanUnixAcrossTasks(t *testing.T) {
	l := newLayout()
	a := l.usk(50, unix.SOCK_SEQPACKET, tcpEstablished, 51, "")
	b := l.usk(51, unix.SOCK_SEQPACKET, tcpEstablished, 50, "")
	l.queue(a, "for the parent")
	l.queue(b, "for the child")
	l.fd(3, a, false)
	p, err := planFds(l)
	if err != nil {
		t.Fatal(err)
	}
	s := newFdSim(nil)
	s.world = newWorld()
	if err := s.runCalls(p.prog, 0, p.fdsEnd); err != nil {
		t.Fatalf("%v\nplan:\n%s", err, p.prog)
	}
	parked, ok := p.restored.Held[b]
	if !ok || p.restored.Parked[parked] != b {
		t.Fatalf("the other end (file id %d) is not parked: %+v", b, p.restored)
	}
	ka := checkSock(t, s, l, 3)
	other := s.fds[parked].f

	// The child takes the other end from the parent.
	l2 := newLayout()
	l2.in.Files, l2.in.Extra = l.in.Files, l.in.Extra
	l2.fd(4, b, false)
	l2.others[77] = map[int]*simFile{parked: other}
	l2.known[b] = other
	l2.in.Shared = func(id uint32) (Holder, bool) { return Holder{Pid: 77, Fd: parked}, id == b }
	s2, _ := runWorld(t, l2, s.world)
	if kb := checkSock(t, s2, l2, 4); kb.peer != ka || ka.peer != kb {
		t.Errorf("the child's end is not the parent's peer")
	}
}

func TestPlanUnixErrors(t *testing.T) {
	cases := []struct {
		name  string
		build func(l *layout)
		want  []string
	}{
		{"external peer", func(l *layout) {
			l.fd(3, l.usk(60, unix.SOCK_STREAM, tcpEstablished, 99, ""), false)
		}, []string{"fd 3", "unix socket 60", "99", "not in the images"}},
		{"not a socket at the path", func(l *layout) {
			l.fd(3, l.usk(61, unix.SOCK_DGRAM, tcpClose, 0, "/run/x\x00"), false)
			l.withModes(map[string]fs.FileMode{"/run/x": 0})
		}, []string{"/run/x", "not a socket"}},
		{"queue without a sender", func(l *layout) {
			id := l.usk(62, unix.SOCK_DGRAM, tcpClose, 0, "")
			l.queue(id, "lost")
			l.fd(3, id, false)
		}, []string{"unix socket 62", "no peer to send them"}},
		{"dangling connection", func(l *layout) {
			l.fd(3, l.usk(63, unix.SOCK_STREAM, tcpEstablished, 0, ""), false)
		}, []string{"unix socket 63", "dangling"}},
		{"relative name without its directory", func(l *layout) {
			l.fd(3, l.usk(64, unix.SOCK_DGRAM, tcpClose, 0, "rel", func(e *skunix.UnixSkEntry) { e.NameDir = nil }), false)
		}, []string{"unix socket 64", "relative name rel"}},
		{"directory of a relative name gone", func(l *layout) {
			l.fd(3, l.usk(68, unix.SOCK_DGRAM, tcpClose, 0, "rel\x00"), false)
		}, []string{"unix socket 68", "directory /srv", "gone"}},
		{"external socket of criu", func(l *layout) {
			l.fd(3, l.usk(65, unix.SOCK_DGRAM, tcpListen, 0, "/dev/log", func(e *skunix.UnixSkEntry) { e.Uflags = proto.Uint32(1) }), false)
		}, []string{"unix socket 65", "external"}},
		{"connected to an unnamed socket", func(l *layout) {
			l.usk(66, unix.SOCK_DGRAM, tcpClose, 0, "")
			l.fd(3, l.usk(67, unix.SOCK_DGRAM, tcpEstablished, 66, ""), false)
		}, []string{"unix socket 67", "no name"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLayout()
			c.build(l)
			_, err := planFds(l)
			if err == nil {
				t.Fatal("planned without error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestPlanUnixDeterministic: a group of sockets plans the same each time.
func TestPlanUnixDeterministic(t *testing.T) {
	l := newLayout()
	ids := []uint32{
		l.usk(70, unix.SOCK_STREAM, tcpListen, 0, "\x00l"),
		l.usk(71, unix.SOCK_STREAM, tcpEstablished, 70, ""),
		l.usk(72, unix.SOCK_STREAM, tcpEstablished, 70, ""),
		l.usk(73, unix.SOCK_DGRAM, tcpEstablished, 74, ""),
		l.usk(74, unix.SOCK_DGRAM, tcpEstablished, 73, ""),
	}
	for i, id := range ids {
		l.fd(3+i, id, false)
	}
	requireSamePlan(t, l, 20)
}

// TestPlanUnixSelfConnected checks a datagram socket connected to itself
// with a message it sent itself queued: refilled by name, then
// connected to its own name.
func TestPlanUnixSelfConnected(t *testing.T) {
	l := newLayout()
	me := l.usk(50, unix.SOCK_DGRAM, tcpEstablished, 50, "/run/self.sock")
	l.queue(me, "to myself")
	l.fd(3, me, false)
	s, _ := runWorld(t, l, newWorld())
	if k := checkSock(t, s, l, 3); k.peer != k {
		t.Errorf("peer %v, want itself", k.peer)
	}
}
