package files

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"amber/internal/sockets"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	skinet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-inet"
	skopts "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-opts"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// inetImg builds the InetSkEntry of a socket as the dump writes it.
func inetImg(family, typ, pr int, state uint32, src, dst string, flags uint32, opts *skopts.SkOptsEntry) *skinet.InetSkEntry {
	ap := func(s string) netip.AddrPort {
		if s == "" {
			return netip.AddrPort{}
		}
		return netip.MustParseAddrPort(s)
	}
	s, d := ap(src), ap(dst)
	if opts == nil {
		opts = &skopts.SkOptsEntry{}
	}
	for _, p := range []**uint32{&opts.SoSndbuf, &opts.SoRcvbuf} {
		if *p == nil {
			*p = proto.Uint32(0)
		}
	}
	for _, p := range []**uint64{&opts.SoSndTmoSec, &opts.SoSndTmoUsec, &opts.SoRcvTmoSec, &opts.SoRcvTmoUsec} {
		*p = proto.Uint64(0)
	}
	return &skinet.InetSkEntry{
		Family: proto.Uint32(uint32(family)), Type: proto.Uint32(uint32(typ)), Proto: proto.Uint32(uint32(pr)),
		State: proto.Uint32(state), SrcPort: proto.Uint32(uint32(s.Port())), DstPort: proto.Uint32(uint32(d.Port())),
		Flags: proto.Uint32(flags), Backlog: proto.Uint32(0), Fown: newFown(), Opts: opts,
		SrcAddr: addrWords(s.Addr(), family), DstAddr: addrWords(d.Addr(), family),
	}
}

// addInet adds socket e to l's files with inode ino and returns its id.
func (l *layout) addInet(e *skinet.InetSkEntry, ino uint32) uint32 {
	id := l.nextID()
	e.Id, e.Ino = proto.Uint32(id), proto.Uint32(ino)
	l.in.Files[id] = &fdinfo.FileEntry{Type: fdinfo.FdTypes_INETSK.Enum(), Id: proto.Uint32(id), Isk: e}
	return id
}

// TestPlanInet restores listeners, bound and connected UDP sockets and
// TCP connections with queues in a simulated task: every socket ends up
// at its number, bound, listening or connected as dumped, with its
// reuse options as dumped, and each connection in repair mode with its
// sequence numbers and queues, listed for EndTCPRepair.
func TestPlanInet(t *testing.T) {
	reuse := func() *skopts.SkOptsEntry { return &skopts.SkOptsEntry{Reuseaddr: proto.Bool(true)} }
	l := newLayout()
	lsn := inetImg(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_TCP, tcpListen, "0.0.0.0:8880", "", unix.O_RDWR, reuse())
	lsn.Backlog = proto.Uint32(9)
	l.fd(3, l.addInet(lsn, 100), false)
	conn := l.addInet(inetImg(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_TCP, tcpEstablished, "127.0.0.1:8880",
		"127.0.0.1:40000", unix.O_RDWR|unix.O_NONBLOCK, reuse()), 101)
	l.fd(7, conn, true)
	conn6 := l.addInet(inetImg(unix.AF_INET6, unix.SOCK_STREAM, unix.IPPROTO_TCP, tcpEstablished, "[::1]:9000",
		"[::1]:9001", unix.O_RDWR, nil), 102)
	l.fd(0, conn6, false)
	l.fd(5, l.addInet(inetImg(unix.AF_INET6, unix.SOCK_DGRAM, unix.IPPROTO_UDP, tcpEstablished, "[::ffff:127.0.0.1]:5000",
		"[::ffff:127.0.0.1]:5001", unix.O_RDWR, &skopts.SkOptsEntry{SoReuseport: proto.Bool(true)}), 103), false)
	l.fd(6, l.addInet(inetImg(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_TCP, tcpClose, "", "", unix.O_RDWR, nil), 104), false)
	l.in.TCPEstablished = true
	l.in.Extra = &Extra{TCPStreams: map[uint32]*sockets.TCPStream{101: tcpStream(200<<10, 3000, 1000), 102: tcpStream(0, 0, 0)}}

	s, p := runFds(t, l, 0, 1, 2, 3, 17)
	for _, f := range l.in.Fds {
		for _, problem := range inetProblems(s, int(f.GetFd()), l.in, f.GetId()) {
			t.Error(problem)
		}
	}
	r, err := planFds(l)
	if err != nil {
		t.Fatal(err)
	}
	got := r.restored.TCP.Repaired(42, r.restored.Held)
	want := []sockets.TCPRepaired{{Pid: 42, Fd: 7, ID: conn}, {Pid: 42, Fd: 0, ID: conn6}}
	slices.SortFunc(got, func(a, b sockets.TCPRepaired) int { return int(a.ID) - int(b.ID) })
	if !slices.Equal(got, want) {
		t.Errorf("connections in repair mode %v, want %v", got, want)
	}
	if t.Failed() {
		t.Logf("plan:\n%s", p)
	}
}

// TestPlanInetClosed restores, with --tcp-close, a connection closed (a
// new socket, neither bound nor connected nor in repair mode, that
// CloseTCP shuts down both ways) next to a closed socket that was shut
// down, bound again to its address in repair mode (its connection's
// TIME_WAIT holds it) and shut down as it was by CloseTCP.
func TestPlanInetClosed(t *testing.T) {
	l := newLayout()
	conn := l.addInet(inetImg(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_TCP, tcpEstablished, "127.0.0.1:8880",
		"127.0.0.1:40000", unix.O_RDWR, nil), 101)
	l.fd(3, conn, false)
	closedImg := inetImg(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_TCP, tcpClose, "127.0.0.1:40001", "", unix.O_RDWR, nil)
	closedImg.Shutdown = skopts.SkShutdown_READ.Enum()
	closed := l.addInet(closedImg, 102)
	l.fd(4, closed, false)
	l.in.TCPClose = true

	s, p := runFds(t, l, 0, 1, 2)
	if k := s.fds[3].f.in; k == nil || k.bound != nil || k.peer != nil || k.repair {
		t.Errorf("fd 3: want a new socket, neither bound nor connected nor in repair mode: %+v", k)
	}
	if k := s.fds[4].f.in; k == nil || k.bound == nil || k.repair || k.shutdown != 0 {
		t.Errorf("fd 4: want bound, out of repair mode, not shut down by the plan: %+v", k)
	}
	r, err := planFds(l)
	if err != nil {
		t.Fatal(err)
	}
	got := r.restored.TCP.Closed(42, r.restored.Held)
	slices.SortFunc(got, func(a, b sockets.TCPShut) int { return a.Fd - b.Fd })
	want := []sockets.TCPShut{{Pid: 42, Fd: 3, ID: conn, How: skopts.SkShutdown_BOTH}, {Pid: 42, Fd: 4, ID: closed, How: skopts.SkShutdown_READ}}
	if !slices.Equal(got, want) {
		t.Errorf("sockets for CloseTCP %v, want %v", got, want)
	}
	if len(r.restored.TCP.Repair) != 0 {
		t.Errorf("connections left in repair mode: %v", r.restored.TCP.Repair)
	}
	if t.Failed() {
		t.Logf("plan:\n%s", p)
	}
}

// TestPlanInetEnded restores, with no option, a connection that ended
// (TCP_CLOSE, with its peer's address): bound again in repair mode as a
// closed socket, out of repair mode, and left to CloseTCP, which
// connects it again and shuts it down as it was.
func TestPlanInetEnded(t *testing.T) {
	l := newLayout()
	img := inetImg(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_TCP, tcpClose, "127.0.0.1:40001", "127.0.0.1:8880", unix.O_RDWR, nil)
	img.Shutdown = skopts.SkShutdown_BOTH.Enum()
	ended := l.addInet(img, 103)
	l.fd(3, ended, false)

	s, p := runFds(t, l, 0, 1, 2)
	if k := s.fds[3].f.in; k == nil || k.bound == nil || k.peer != nil || k.repair {
		t.Errorf("fd 3: want bound, not connected, out of repair mode: %+v", k)
	}
	r, err := planFds(l)
	if err != nil {
		t.Fatal(err)
	}
	got := r.restored.TCP.Closed(42, r.restored.Held)
	want := []sockets.TCPShut{{Pid: 42, Fd: 3, ID: ended, How: skopts.SkShutdown_BOTH, Ended: true}}
	if !slices.Equal(got, want) {
		t.Errorf("sockets for CloseTCP %v, want %v", got, want)
	}
	if len(r.restored.TCP.Repair) != 0 {
		t.Errorf("connections left in repair mode: %v", r.restored.TCP.Repair)
	}
	if t.Failed() {
		t.Logf("plan:\n%s", p)
	}
}

// TestPlanInetRefused: what restore refuses, naming the socket.
func TestPlanInetRefused(t *testing.T) {
	est := func() *skinet.InetSkEntry {
		return inetImg(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_TCP, tcpEstablished, "127.0.0.1:1", "127.0.0.1:2", 0, nil)
	}
	sctp := inetImg(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP, tcpClose, "", "", 0, nil)
	synSent := est()
	synSent.State = proto.Uint32(tcpSynSent)
	cases := []struct {
		name     string
		e        *skinet.InetSkEntry
		tcpEst   bool
		streams  map[uint32]*sockets.TCPStream
		contains string
	}{
		{"connection without --tcp-established", est(), false, map[uint32]*sockets.TCPStream{9: tcpStream(1, 1, 0)}, "--tcp-established"},
		{"connection without its stream", est(), true, nil, "tcp-stream-9.img"},
		{"SCTP socket", sctp, true, nil, "only TCP, UDP, raw and ping"},
		{"connection not established", synSent, true, nil, "SYN_SENT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLayout()
			l.fd(3, l.addInet(c.e, 9), false)
			l.in.TCPEstablished = c.tcpEst
			l.in.Extra = &Extra{TCPStreams: c.streams}
			_, err := planFds(l)
			if err == nil || !strings.Contains(err.Error(), c.contains) || !strings.Contains(err.Error(), "socket 9") {
				t.Fatalf("got %v, want an error naming socket 9 and %q", err, c.contains)
			}
		})
	}
}

// TestPlanInetRawPing restores raw and ping sockets in a simulated
// task: each bound or connected as dumped, a raw ICMP socket with its
// ICMP filter, IP_NODEFRAG and IP_HDRINCL, and a bound raw IPv6 socket
// without IP_FREEBIND at SOL_IP, which raw IPv6 sockets do not have.
func TestPlanInetRawPing(t *testing.T) {
	l := newLayout()
	raw4 := inetImg(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP, tcpClose, "0.0.0.0:1", "", unix.O_RDWR, nil)
	raw4.IpOpts = &skinet.IpOptsEntry{Raw: &skinet.IpOptsRawEntry{Hdrincl: proto.Bool(true), Nodefrag: proto.Bool(true),
		IcmpvFilter: []uint32{0xfffffffe}}}
	l.fd(3, l.addInet(raw4, 100), false)
	l.fd(4, l.addInet(inetImg(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_UDP, tcpClose, "[::1]:17", "", unix.O_RDWR, nil), 101), false)
	l.fd(5, l.addInet(inetImg(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP, tcpClose, "127.0.0.1:4242", "", unix.O_RDWR, nil), 102), false)
	l.fd(6, l.addInet(inetImg(unix.AF_INET6, unix.SOCK_DGRAM, unix.IPPROTO_ICMPV6, tcpEstablished, "[::1]:7", "[::1]:1",
		unix.O_RDWR, nil), 103), false)

	s, p := runFds(t, l, 0, 1, 2)
	for _, f := range l.in.Fds {
		for _, problem := range inetProblems(s, int(f.GetFd()), l.in, f.GetId()) {
			t.Error(problem)
		}
	}
	k := s.fds[3].f.in
	if f := k.opts[[2]int{unix.SOL_RAW, 1}]; !bytes.Equal(f, []byte{0xfe, 0xff, 0xff, 0xff}) {
		t.Errorf("fd 3: ICMP_FILTER %x, want fffffffe", f)
	}
	for _, o := range [][2]int{{unix.SOL_IP, unix.IP_NODEFRAG}, {unix.SOL_IP, unix.IP_HDRINCL}} {
		if v, ok := k.optInt(o[0], o[1]); !ok || v != 1 {
			t.Errorf("fd 3: option %d of level %d is %d (set %v), want 1", o[1], o[0], v, ok)
		}
	}
	if _, ok := s.fds[4].f.in.optInt(unix.SOL_IP, unix.IP_FREEBIND); ok {
		t.Errorf("fd 4: IP_FREEBIND set on a raw IPv6 socket")
	}
	if t.Failed() {
		t.Logf("plan:\n%s", p)
	}
}
