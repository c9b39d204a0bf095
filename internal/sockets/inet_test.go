package sockets

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"amber/internal/image/imagetest"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	skinet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-inet"
	skopts "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-opts"
	tcpstream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// TestAddrWords: addresses are kept as criu keeps them, the bytes in
// network order read as little-endian words.
func TestAddrWords(t *testing.T) {
	cases := []struct {
		addr   string
		family int
		want   []uint32
	}{
		{"127.0.0.1", unix.AF_INET, []uint32{0x0100007f}},
		{"10.1.2.3", unix.AF_INET, []uint32{0x0302010a}},
		{"::1", unix.AF_INET6, []uint32{0, 0, 0, 0x01000000}},
		{"::ffff:127.0.0.1", unix.AF_INET6, []uint32{0, 0, 0xffff0000, 0x0100007f}},
		{"", unix.AF_INET6, []uint32{0, 0, 0, 0}},
	}
	for _, c := range cases {
		var a netip.Addr
		if c.addr != "" {
			a = netip.MustParseAddr(c.addr)
		}
		got := addrWords(a, c.family)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: words %#x, want %#x", c.addr, got, c.want)
		}
		back, err := wordsAddr(got, uint32(c.family))
		if err != nil || (a.IsValid() && back != a) {
			t.Errorf("%s: back to %v (%v)", c.addr, back, err)
		}
	}
	if _, err := wordsAddr([]uint32{1}, unix.AF_INET6); err == nil {
		t.Errorf("an IPv6 address of one word was taken")
	}
}

// TestInetSockaddr: struct sockaddr_in and sockaddr_in6 as the kernel
// takes them.
func TestInetSockaddr(t *testing.T) {
	sa := inetSockaddr(unix.AF_INET, netip.MustParseAddrPort("127.0.0.1:8880"))
	want := []byte{2, 0, 0x22, 0xb0, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(sa, want) {
		t.Errorf("IPv4: %v, want %v", sa, want)
	}
	sa = inetSockaddr(unix.AF_INET6, netip.MustParseAddrPort("[::1]:80"))
	if len(sa) != 28 || binary.LittleEndian.Uint16(sa) != unix.AF_INET6 ||
		binary.BigEndian.Uint16(sa[2:]) != 80 || sa[23] != 1 || binary.LittleEndian.Uint32(sa[24:]) != 0 {
		t.Errorf("IPv6: %v", sa)
	}
}

// TestCheckInet: what the dump refuses, and what it takes.
func TestCheckInet(t *testing.T) {
	conn := func(state uint32) *inetSock {
		return &inetSock{ino: 7, family: unix.AF_INET, typ: unix.SOCK_STREAM, proto: unix.IPPROTO_TCP, state: state,
			src: netip.MustParseAddrPort("127.0.0.1:80"), dst: netip.MustParseAddrPort("127.0.0.1:4000")}
	}
	listener := &inetSock{family: unix.AF_INET, typ: unix.SOCK_STREAM, proto: unix.IPPROTO_TCP, state: tcpListen, pending: 2}
	halfClosed := conn(tcpEstablished)
	halfClosed.shutdown = skopts.SkShutdown_WRITE
	cases := []struct {
		k      *inetSock
		tcpEst bool
		want   string // "" when taken
	}{
		{conn(tcpEstablished), false, "--tcp-established"},
		{conn(tcpEstablished), true, ""},
		{conn(tcpCloseWait), true, ""},
		{conn(tcpCloseWait), false, "--tcp-established"},
		{conn(tcpFinWait2), true, ""},
		{conn(tcpFinWait1), false, "--tcp-established"},
		{conn(tcpTimeWait), true, "TIME_WAIT"},
		{conn(tcpSynSent), true, ""},
		{conn(tcpSynSent), false, "--tcp-established"},
		{conn(tcpSynRecv), true, "SYN_RECV"},
		{halfClosed, true, "shut down for writing"},
		{listener, false, "wait to be accepted"},
		{&inetSock{typ: unix.SOCK_STREAM, proto: unix.IPPROTO_TCP, state: tcpClose}, false, ""},
		{&inetSock{typ: unix.SOCK_DGRAM, proto: unix.IPPROTO_UDP, state: tcpEstablished}, false, ""},
	}
	for _, c := range cases {
		d := &Dumper{opts: DumpOptions{TCPEstablished: c.tcpEst}}
		err := d.checkInet(c.k)
		if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%v (--tcp-established %v): %v, want %q", c.k, c.tcpEst, err, c.want)
		}
	}
	for _, k := range []*inetSock{{typ: unix.SOCK_STREAM, proto: unix.IPPROTO_SCTP}, {typ: unix.SOCK_STREAM, proto: unix.IPPROTO_MPTCP}} {
		if err := checkProto(k); err == nil {
			t.Errorf("type %d protocol %d taken", k.typ, k.proto)
		}
	}
}

// stream is a connection's tcp-stream image with queues of the given
// sizes, unsent the last bytes of its send queue.
func stream(in, out, unsent int) *TCPStream {
	b := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }
	return &TCPStream{
		Entry: &tcpstream.TcpStreamEntry{
			InqLen: proto.Uint32(uint32(in)), InqSeq: proto.Uint32(5000), OutqLen: proto.Uint32(uint32(out)),
			OutqSeq: proto.Uint32(100), OptMask: proto.Uint32(tcpiOptSack | tcpiOptWscale | tcpiOptTimestamps),
			SndWscale: proto.Uint32(7), RcvWscale: proto.Uint32(9), MssClamp: proto.Uint32(1460),
			Timestamp: proto.Uint32(123456), UnsqLen: proto.Uint32(uint32(unsent)),
			SndWl1: proto.Uint32(1), SndWnd: proto.Uint32(2), MaxWindow: proto.Uint32(3), RcvWnd: proto.Uint32(4), RcvWup: proto.Uint32(5),
		},
		In: b(in, 'i'), Out: b(out, 'o'),
	}
}

// TestTCPStreamImage: tcp-stream-INO.img written and read back, its
// queues after the entry; a bad unsent length is refused.
func TestTCPStreamImage(t *testing.T) {
	dir := imagetest.Dir(t)
	st := stream(10, 20, 5)
	st.In[0], st.Out[19] = 'I', 'O'
	if err := writeTCPStream(dir, 0x1a2b, st); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir.File("tcp-stream-1a2b.img").String()); err != nil {
		t.Fatal(err)
	}
	// Only the streams of the sockets files.img lists are read: a stale
	// one of another dump is not.
	if err := writeTCPStream(dir, 0x3c4d, stream(1, 1, 0)); err != nil {
		t.Fatal(err)
	}
	idx := map[uint32]*fdinfo.FileEntry{7: {Id: proto.Uint32(7), Type: fdinfo.FdTypes_INETSK.Enum(),
		Isk: &skinet.InetSkEntry{Ino: proto.Uint32(0x1a2b), Proto: proto.Uint32(unix.IPPROTO_TCP)}}}
	got, err := ReadTCPStreams(dir, idx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Errorf("read %d streams, want the one files.img names", len(got))
	}
	g := got[0x1a2b]
	if g == nil || !bytes.Equal(g.In, st.In) || !bytes.Equal(g.Out, st.Out) || !proto.Equal(g.Entry, st.Entry) {
		t.Fatalf("read back %+v, want %+v", g, st)
	}
	st.Entry.UnsqLen = proto.Uint32(21)
	if err := writeTCPStream(dir, 0x1a2b, st); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTCPStreams(dir, idx); err == nil || !strings.Contains(err.Error(), "unsent") {
		t.Fatalf("an unsent length beyond the send queue: %v", err)
	}
}

// TestReadTCPStream puts a copy of a real loopback connection's socket
// in repair mode and reads it as the dump does: its queues hold what
// was written and not read. It needs CAP_NET_ADMIN.
func TestReadTCPStream(t *testing.T) {
	srv, cli := loopbackPair(t)
	defer unix.Close(srv)
	defer unix.Close(cli)
	toSrv, toCli := bytes.Repeat([]byte("to server "), 3000), bytes.Repeat([]byte("to client "), 700)
	if _, err := unix.Write(cli, toSrv); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(srv, toCli); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(srv, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); errors.Is(err, unix.EPERM) {
		t.Skip("TCP repair mode needs CAP_NET_ADMIN")
	} else if err != nil {
		t.Fatal(err)
	}
	defer unix.SetsockoptInt(srv, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF)
	st, err := readTCPStream(srv)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(st.In, toSrv) || st.Entry.GetInqLen() != uint32(len(toSrv)) {
		t.Errorf("receive queue of %d bytes, want the %d written", len(st.In), len(toSrv))
	}
	// On loopback the client acknowledges at once: nothing waits.
	if len(st.Out) != 0 || st.Entry.GetUnsqLen() != 0 {
		t.Errorf("send queue of %d bytes (%d unsent), want none", len(st.Out), st.Entry.GetUnsqLen())
	}
	if st.Entry.GetMssClamp() == 0 || st.Entry.SndWnd == nil {
		t.Errorf("no MSS or windows: %v", st.Entry)
	}
	b := make([]byte, len(toCli)+1)
	if n, err := unix.Read(cli, b); err != nil || !bytes.Equal(b[:n], toCli) {
		t.Errorf("the client reads %d bytes (%v), want the %d in flight", n, err, len(toCli))
	}
}

// loopbackPair returns both ends of a TCP connection on 127.0.0.1.
func loopbackPair(t *testing.T) (srv, cli int) {
	t.Helper()
	lsn, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lsn)
	if err := unix.Bind(lsn, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lsn, 1); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(lsn)
	if err != nil {
		t.Fatal(err)
	}
	if cli, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(cli, sa); err != nil {
		t.Fatal(err)
	}
	if srv, _, err = unix.Accept4(lsn, unix.SOCK_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	return srv, cli
}

// TestFromSockaddrL2TP: x/sys decodes the address of a raw socket of
// protocol IPPROTO_L2TP as an L2TP/IP one; it is an inet address whose
// port is the protocol.
func TestFromSockaddrL2TP(t *testing.T) {
	ap, _, err := fromSockaddr(&unix.SockaddrL2TPIP{Addr: [4]byte{127, 0, 0, 1}, ConnId: 7}, -1)
	if want := netip.MustParseAddrPort("127.0.0.1:115"); err != nil || ap != want {
		t.Errorf("L2TP/IP address: %v, %v; want %v", ap, err, want)
	}
	ap, _, err = fromSockaddr(&unix.SockaddrL2TPIP6{Addr: netip.IPv6Loopback().As16()}, -1)
	if want := netip.MustParseAddrPort("[::1]:115"); err != nil || ap != want {
		t.Errorf("L2TP/IP6 address: %v, %v; want %v", ap, err, want)
	}
}
