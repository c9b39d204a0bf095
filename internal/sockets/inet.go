package sockets

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	skinet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-inet"
	skopts "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-opts"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

// Inet sockets, as CRIU's sk-inet.c has them: TCP, UDP and UDP-Lite
// over IPv4 and IPv6. A socket is a files.img entry of type INETSK (InetSkEntry): its
// family, type, protocol and state, its local and remote address and
// port, a listener's backlog, and its socket, IP and TCP options
// (inet_opts.go). An established TCP connection also has its
// tcp-stream-INO.img (tcp.go).
//
// What amber restores, and how (MakeInet below):
//   - a socket bound to an address and port, or not bound: socket, bind;
//   - a TCP listener: listen, with its backlog;
//   - a UDP socket connected to a peer: connect;
//   - an established TCP connection, with --tcp-established at dump and
//     at restore: in TCP repair mode, without a handshake (tcp.go).
//
// Raw and ping sockets are restored as UDP ones are (raw.go).
//
// The dump refuses, naming the descriptor: other protocols (SCTP, MPTCP), TCP connections in other states than established
// (connecting, half closed), a listener with connections waiting to be
// accepted (criu does too without --tcp-skip-in-flight), a corked UDP
// socket, and sockets of a network namespace other than amber's.
// Datagrams waiting in a UDP socket are dropped with a warning, as criu
// does. Every socket is made with SO_REUSEADDR, so that a listener and
// the connections accepted from it share their port again; the dumped
// value is set once the socket is bound.

// inetSock is what the dump learns of one inet socket besides its
// options.
type inetSock struct {
	ino      uint32
	family   int // AF_INET or AF_INET6
	typ      int // SOCK_STREAM or SOCK_DGRAM
	proto    int // IPPROTO_TCP or IPPROTO_UDP
	state    uint32
	src, dst netip.AddrPort // dst is invalid when not connected
	ifname   string         // interface of a link-local IPv6 address
	backlog  uint32         // a listener's
	pending  uint32         // a listener's connections waiting to be accepted
	shutdown skopts.SkShutdown
}

// TCP states of net/tcp_states.h besides those of diag.go.
const (
	tcpSynSent   = 2
	tcpSynRecv   = 3
	tcpFinWait1  = 4
	tcpFinWait2  = 5
	tcpTimeWait  = 6
	tcpCloseWait = 8
	tcpLastAck   = 9
	tcpClosing   = 11
)

// tcpStateName names a TCP state, for errors and logs.
func tcpStateName(s uint32) string {
	names := map[uint32]string{tcpEstablished: "ESTABLISHED", tcpSynSent: "SYN_SENT", tcpSynRecv: "SYN_RECV",
		tcpFinWait1: "FIN_WAIT1", tcpFinWait2: "FIN_WAIT2", tcpTimeWait: "TIME_WAIT", tcpClose: "CLOSE",
		tcpCloseWait: "CLOSE_WAIT", tcpLastAck: "LAST_ACK", tcpListen: "LISTEN", tcpClosing: "CLOSING"}
	if n, ok := names[s]; ok {
		return n
	}
	return fmt.Sprintf("state %d", s)
}

// protoName is "tcp", "udp", "tcp6" or "udp6".
func protoName(family, proto int) string {
	name := fmt.Sprintf("proto %d", proto)
	switch proto {
	case unix.IPPROTO_TCP:
		name = "tcp"
	case unix.IPPROTO_UDP:
		name = "udp"
	case unix.IPPROTO_UDPLITE:
		name = "udplite"
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		name = "icmp"
	}
	if family == unix.AF_INET6 {
		name += "6"
	}
	return name
}

// String names the socket as errors do: "tcp socket 1234 (127.0.0.1:80
// -> 127.0.0.1:4242, ESTABLISHED)".
func (k *inetSock) String() string {
	return inetName(k.family, k.typ, k.proto, k.ino, k.src, k.dst, k.state)
}

func inetName(family, typ, proto int, ino uint32, src, dst netip.AddrPort, state uint32) string {
	peer := ""
	if dst.IsValid() && dst.Port() != 0 {
		peer = " -> " + dst.String()
	}
	kind := protoName(family, proto)
	if typ == unix.SOCK_RAW {
		kind = "raw " + kind
	}
	return fmt.Sprintf("%s socket %d (%s%s, %s)", kind, ino, src, peer, tcpStateName(state))
}

// tcpConnection reports whether the socket is a TCP connection, which
// only repair mode restores.
func (k *inetSock) tcpConnection() bool {
	return k.typ == unix.SOCK_STREAM && k.dst.IsValid() && k.dst.Port() != 0
}

// addInetSocket records inet socket s (a copy of pid's fd) in the table.
// An established TCP connection is put in repair mode (tcp.go) and
// stays so until Release.
func (d *Dumper) addInetSocket(pid, fd, s int, ino, flags uint32, family int) (uint32, error) {
	k, err := readInet(s, ino, family)
	if err != nil {
		return 0, fmt.Errorf("%s socket %d: %w", protoName(family, 0), ino, err)
	}
	if err := d.readShutdown(s, k); err != nil {
		return 0, fmt.Errorf("%v: %w", k, err)
	}
	if err := d.checkInet(k); err != nil {
		return 0, fmt.Errorf("%v: %w", k, err)
	}
	ie, err := inetEntry(s, k, flags)
	if err != nil {
		return 0, fmt.Errorf("%v: %w", k, err)
	}
	ie.NsId = d.netns.nsID()
	id := d.files.Add(&fdinfo.FileEntry{Type: fdinfo.FdTypes_INETSK.Enum(), Isk: ie})
	ie.Id = proto.Uint32(id)
	if k.tcpConnection() && !d.opts.TCPClose {
		if err := d.dumpTCPStream(pid, fd, s, k, ie.GetOpts().GetReuseaddr()); err != nil {
			return 0, fmt.Errorf("%v: %w", k, err)
		}
	}
	d.warnDroppedDatagrams(s, k)
	return id, nil
}

// readInet learns the protocol, state and addresses of socket s.
func readInet(s int, ino uint32, family int) (*inetSock, error) {
	k := &inetSock{ino: ino, family: family}
	var err error
	if k.typ, err = unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_TYPE); err != nil {
		return nil, fmt.Errorf("SO_TYPE: %w", err)
	}
	if k.proto, err = unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil {
		return nil, fmt.Errorf("SO_PROTOCOL: %w", err)
	}
	if err := checkProto(k); err != nil {
		return nil, err
	}
	if err := k.readAddrs(s); err != nil {
		return nil, err
	}
	if k.typ == unix.SOCK_STREAM {
		if err := k.readTCPState(s); err != nil {
			return nil, err
		}
		if k.state == tcpClose && !k.dst.IsValid() {
			// A connection that ended keeps its peer's address, which
			// getpeername no longer tells and SO_PEERNAME does.
			if k.dst, err = peerName(s, family); err != nil {
				return nil, err
			}
		}
		return k, nil
	}
	if datagram(k.typ, k.proto) {
		if corked, err := unix.GetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_CORK); err != nil || corked != 0 {
			return nil, fmt.Errorf("a corked UDP socket (UDP_CORK %d, %v): not supported (nor by criu)", corked, err)
		}
	}
	k.state = tcpClose
	if k.dst.IsValid() {
		k.state = tcpEstablished
	}
	return k, nil
}

// datagram reports whether a socket of type and protocol is UDP or
// UDP-Lite, which amber restores alike.
func datagram(typ, proto int) bool {
	return typ == unix.SOCK_DGRAM && (proto == unix.IPPROTO_UDP || proto == unix.IPPROTO_UDPLITE)
}

// checkProto refuses what is neither TCP, UDP, raw nor ping (raw.go).
func checkProto(k *inetSock) error {
	switch {
	case k.typ == unix.SOCK_STREAM && k.proto == unix.IPPROTO_TCP, datagram(k.typ, k.proto), rawOrPing(k.typ, k.proto):
		return nil
	case k.proto == unix.IPPROTO_MPTCP:
		return fmt.Errorf("an MPTCP socket: not supported (Go programs: GODEBUG=multipathtcp=0)")
	}
	return fmt.Errorf("type %d protocol %d: only TCP, UDP, raw and ping sockets are supported", k.typ, k.proto)
}

// readAddrs reads the local and, if connected, the remote address.
func (k *inetSock) readAddrs(s int) error {
	sa, err := unix.Getsockname(s)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	if k.src, k.ifname, err = fromSockaddr(sa, s); err != nil {
		return err
	}
	sa, err = unix.Getpeername(s)
	if errors.Is(err, unix.ENOTCONN) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("getpeername: %w", err)
	}
	k.dst, _, err = fromSockaddr(sa, s)
	return err
}

// peerName is the peer address a closed TCP socket s keeps from the
// connection it had (SO_PEERNAME, which tells it in TCP_CLOSE too); none
// if it never connected. The kernel wants room for exactly the address
// of the socket's family.
func peerName(s, family int) (netip.AddrPort, error) {
	size := unix.SizeofSockaddrInet4
	if family == unix.AF_INET6 {
		size = unix.SizeofSockaddrInet6
	}
	b, err := getsockoptBytes(s, unix.SOL_SOCKET, unix.SO_PEERNAME, size)
	if errors.Is(err, unix.ENOTCONN) {
		return netip.AddrPort{}, nil
	}
	if err != nil || len(b) < unix.SizeofSockaddrInet4 {
		return netip.AddrPort{}, fmt.Errorf("SO_PEERNAME (%d bytes): %w", len(b), err)
	}
	port := binary.BigEndian.Uint16(b[2:])
	switch binary.LittleEndian.Uint16(b) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port), nil
	case unix.AF_INET6:
		if len(b) >= unix.SizeofSockaddrInet6 {
			return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), port), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("SO_PEERNAME: an address of family %d", binary.LittleEndian.Uint16(b))
}

// fromSockaddr turns an inet address of socket s into an AddrPort, and
// the scope of a link-local IPv6 one into its interface's name, in the
// socket's network namespace (SIOCGIFNAME on s), which may not be
// amber's.
func fromSockaddr(sa unix.Sockaddr, s int) (netip.AddrPort, string, error) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), "", nil
	case *unix.SockaddrInet6:
		ap := netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
		if a.ZoneId == 0 {
			return ap, "", nil
		}
		ifr, err := unix.NewIfreq("")
		if err != nil {
			return ap, "", err
		}
		ifr.SetUint32(a.ZoneId)
		if err := unix.IoctlIfreq(s, unix.SIOCGIFNAME, ifr); err != nil {
			return ap, "", fmt.Errorf("address %v: interface %d (SIOCGIFNAME): %w", ap, a.ZoneId, err)
		}
		return ap, ifr.Name(), nil
	case *unix.SockaddrL2TPIP:
		// x/sys decodes the address of any inet socket of protocol
		// IPPROTO_L2TP so, a raw one's too (checkProto refuses the
		// others): an inet address whose port, which x/sys drops, is a
		// raw socket's protocol.
		return fromSockaddr(&unix.SockaddrInet4{Addr: a.Addr, Port: unix.IPPROTO_L2TP}, s)
	case *unix.SockaddrL2TPIP6:
		return fromSockaddr(&unix.SockaddrInet6{Addr: a.Addr, Port: unix.IPPROTO_L2TP, ZoneId: a.ZoneId}, s)
	}
	return netip.AddrPort{}, "", fmt.Errorf("address of family %T", sa)
}

// tcpInfo is the start of struct tcp_info (linux/tcp.h), with the
// window scales x/sys's TCPInfo leaves out.
type tcpInfo struct {
	state, options       uint8
	sndWscale, rcvWscale uint8
	unacked, sacked      uint32 // a listener's accept queue length and backlog
}

// readTCPInfo reads TCP_INFO of socket s.
func readTCPInfo(s int) (tcpInfo, error) {
	b, err := getsockoptBytes(s, unix.IPPROTO_TCP, unix.TCP_INFO, 104)
	if err != nil || len(b) < 32 {
		return tcpInfo{}, fmt.Errorf("TCP_INFO (%d bytes): %w", len(b), err)
	}
	le := binary.LittleEndian
	return tcpInfo{state: b[0], options: b[5], sndWscale: b[6] & 0xf, rcvWscale: b[6] >> 4,
		unacked: le.Uint32(b[24:]), sacked: le.Uint32(b[28:])}, nil
}

// readTCPState reads a TCP socket's state; a listener's backlog and
// pending connections come with it.
func (k *inetSock) readTCPState(s int) error {
	ti, err := readTCPInfo(s)
	if err != nil {
		return err
	}
	k.state = uint32(ti.state)
	if k.state == tcpListen {
		k.pending, k.backlog = ti.unacked, ti.sacked
	}
	return nil
}

// checkInet refuses a socket whose state amber cannot restore.
func (d *Dumper) checkInet(k *inetSock) error {
	switch k.state {
	case tcpClose:
		return nil
	case tcpListen:
		switch {
		case k.pending == 0:
		case !d.opts.TCPSkipInFlight:
			return fmt.Errorf("%d connections wait to be accepted: dump with --tcp-skip-in-flight to leave them out (criu refuses them too without it)", k.pending)
		case d.opts.Warnf != nil:
			d.opts.Warnf("%v: the %d connections waiting to be accepted are left out (--tcp-skip-in-flight)", k, k.pending)
		}
		return nil
	case tcpFinWait1, tcpFinWait2, tcpLastAck, tcpClosing, tcpSynSent:
		if !d.opts.TCPEstablished && !d.opts.TCPClose {
			return fmt.Errorf("a TCP connection: dump with --tcp-established (or --tcp-close)")
		}
		return nil
	case tcpEstablished, tcpCloseWait:
		if k.proto == unix.IPPROTO_TCP && d.opts.TCPClose {
			return nil
		}
		if k.proto == unix.IPPROTO_TCP && !d.opts.TCPEstablished {
			return fmt.Errorf("an established TCP connection: dump with --tcp-established (or --tcp-close)")
		}
		if k.proto == unix.IPPROTO_TCP && k.shutdown&skopts.SkShutdown_WRITE != 0 {
			return fmt.Errorf("a TCP connection shut down for writing (%v): not supported yet", k.shutdown)
		}
		return nil
	}
	return fmt.Errorf("TCP state %s: not supported yet (only listening, closed, connecting, established and half-closed sockets)", tcpStateName(k.state))
}

// warnDroppedDatagrams warns that the datagrams queued on a UDP socket
// are not kept (as criu).
func (d *Dumper) warnDroppedDatagrams(s int, k *inetSock) {
	if !datagram(k.typ, k.proto) || d.opts.Warnf == nil {
		return
	}
	if n, err := unix.IoctlGetInt(s, unix.SIOCINQ); err == nil && n > 0 {
		d.opts.Warnf("%v: the datagrams in its receive queue are dropped (as criu does)", k)
	}
}

// inetEntry builds the InetSkEntry of socket s, all but its id.
func inetEntry(s int, k *inetSock, flags uint32) (*skinet.InetSkEntry, error) {
	ie := &skinet.InetSkEntry{
		Ino: proto.Uint32(k.ino), Family: proto.Uint32(uint32(k.family)), Type: proto.Uint32(uint32(k.typ)),
		Proto: proto.Uint32(uint32(k.proto)), State: proto.Uint32(k.state), Flags: proto.Uint32(flags),
		SrcPort: proto.Uint32(uint32(k.src.Port())), DstPort: proto.Uint32(uint32(k.dst.Port())),
		Backlog: proto.Uint32(k.backlog), Fown: zeroFown(),
		SrcAddr: addrWords(k.src.Addr(), k.family), DstAddr: addrWords(k.dst.Addr(), k.family),
	}
	if k.ifname != "" {
		ie.Ifname = proto.String(k.ifname)
	}
	if k.shutdown != skopts.SkShutdown_NONE {
		ie.Shutdown = k.shutdown.Enum()
	}
	if err := dumpInetOpts(s, k, ie); err != nil {
		return nil, err
	}
	return ie, nil
}

// addrWords is an address as InetSkEntry keeps it: its bytes, in network
// order, read as little-endian 32-bit words (criu memcpy's them), one
// for IPv4, four for IPv6. An invalid address is all zero.
func addrWords(a netip.Addr, family int) []uint32 {
	n := 4
	if family == unix.AF_INET6 {
		n = 16
	}
	b := make([]byte, n)
	if a.IsValid() {
		if a.Is4() && n == 4 {
			a4 := a.As4()
			copy(b, a4[:])
		} else {
			a16 := a.As16()
			copy(b, a16[:])
		}
	}
	out := make([]uint32, n/4)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return out
}

// wordsAddr is the inverse of addrWords.
func wordsAddr(w []uint32, family uint32) (netip.Addr, error) {
	b := make([]byte, 0, 16)
	for _, x := range w {
		b = binary.LittleEndian.AppendUint32(b, x)
	}
	switch {
	case family == unix.AF_INET && len(w) >= 1:
		return netip.AddrFrom4([4]byte(b[:4])), nil
	case family == unix.AF_INET6 && len(w) == 4:
		return netip.AddrFrom16([16]byte(b)), nil
	}
	return netip.Addr{}, fmt.Errorf("family %d with an address of %d words", family, len(w))
}

// getsockoptBytes reads a socket option of at most size bytes, which
// x/sys has no call for (TCP_INFO whole, TCP_REPAIR_WINDOW).
func getsockoptBytes(s, level, opt, size int) ([]byte, error) {
	b := make([]byte, size)
	n := uint32(size)
	if err := getsockopt(s, level, opt, b, &n); err != nil {
		return nil, err
	}
	return b[:n], nil
}

// getsockopt is getsockopt(2) into b, whose length *n is on entry and
// the option's on return.
func getsockopt(s, level, opt int, b []byte, n *uint32) error {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s), uintptr(level), uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(n)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// inetImage is an inet socket of the images, as MakeInet sees it.
type inetImage struct {
	e        *skinet.InetSkEntry
	src, dst netip.AddrPort
}

// String names the socket as the dump did.
func (k *inetImage) String() string {
	return inetName(int(k.e.GetFamily()), int(k.e.GetType()), int(k.e.GetProto()), k.e.GetIno(), k.src, k.dst, k.e.GetState())
}

// tcpConnection reports whether the socket is a TCP connection.
func (k *inetImage) tcpConnection() bool {
	return k.e.GetType() == unix.SOCK_STREAM && k.e.GetDstPort() != 0
}

// readInetImage checks an InetSkEntry and decodes its addresses.
func readInetImage(e *skinet.InetSkEntry) (*inetImage, error) {
	k := &inetImage{e: e}
	src, err := wordsAddr(e.GetSrcAddr(), e.GetFamily())
	if err != nil {
		return nil, fmt.Errorf("inet socket %d: source address: %w", e.GetIno(), err)
	}
	dst, err := wordsAddr(e.GetDstAddr(), e.GetFamily())
	if err != nil {
		return nil, fmt.Errorf("inet socket %d: destination address: %w", e.GetIno(), err)
	}
	k.src, k.dst = netip.AddrPortFrom(src, uint16(e.GetSrcPort())), netip.AddrPortFrom(dst, uint16(e.GetDstPort()))
	return k, k.check()
}

// check refuses a socket of the images that amber cannot restore.
func (k *inetImage) check() error {
	e := k.e
	f, typ, pr, st := e.GetFamily(), e.GetType(), e.GetProto(), e.GetState()
	switch {
	case f != unix.AF_INET && f != unix.AF_INET6:
		return fmt.Errorf("%v: family %d: not supported", k, f)
	case e.GetOpts() == nil:
		return fmt.Errorf("%v: no socket options (sk_opts_entry)", k)
	case !(typ == unix.SOCK_STREAM && pr == unix.IPPROTO_TCP) && !datagram(int(typ), int(pr)) && !rawOrPing(int(typ), int(pr)):
		return fmt.Errorf("%v: type %d protocol %d: only TCP, UDP, raw and ping sockets are supported", k, typ, pr)
	case st == tcpListen && typ != unix.SOCK_STREAM:
		return fmt.Errorf("%v: listening, but not TCP", k)
	case k.tcpConnection() && st != tcpClose && !repairable(st):
		return fmt.Errorf("%v: TCP state %s: not supported yet", k, tcpStateName(st))
	case st != tcpClose && st != tcpListen && !repairable(st):
		return fmt.Errorf("%v: state %s: not supported", k, tcpStateName(st))
	}
	return nil
}

// inetSockaddr is the struct sockaddr_in or sockaddr_in6 of ap, with no
// scope: a socket bound to a link-local IPv6 address is bound to its
// interface first (bind), by name, in its own network namespace.
func inetSockaddr(family uint32, ap netip.AddrPort) []byte {
	be := binary.BigEndian
	if family == unix.AF_INET {
		b := binary.LittleEndian.AppendUint16(nil, unix.AF_INET)
		b = be.AppendUint16(b, ap.Port())
		a4 := ap.Addr().As4()
		return append(append(b, a4[:]...), make([]byte, 8)...)
	}
	b := binary.LittleEndian.AppendUint16(nil, unix.AF_INET6)
	b = be.AppendUint16(b, ap.Port())
	b = append(b, 0, 0, 0, 0) // flow info
	a16 := ap.Addr().As16()
	b = append(b, a16[:]...)
	return binary.LittleEndian.AppendUint32(b, 0) // scope
}

// inetMaker plans making one inet socket in a task.
type inetMaker struct {
	p  *Plan
	k  *inetImage
	id uint32 // its file id
	fd int
}

// MakeInet makes the inet socket of file e: created non-blocking, bound
// and listening or connected, its options set and, last, its flags. A
// TCP connection is made in repair mode and stays so until every task
// is restored (EndTCPRepair).
func (p *Plan) MakeInet(e *fdinfo.FileEntry) (int, error) {
	ie := e.GetIsk()
	if ie == nil {
		return 0, fmt.Errorf("file id %d: INETSK without its inet_sk_entry", e.GetId())
	}
	k, err := readInetImage(ie)
	if err != nil {
		return 0, err
	}
	m := &inetMaker{p: p, k: k, id: e.GetId()}
	if err := m.make(); err != nil {
		return 0, fmt.Errorf("%v: %w", k, err)
	}
	return m.fd, nil
}

func (m *inetMaker) make() error {
	e := m.k.e
	typ := uint64(e.GetType()) | unix.SOCK_NONBLOCK
	var err error
	if m.fd, err = m.p.createIn(e.NsId, fmt.Sprintf("make %v", m.k), unix.SYS_SOCKET, uint64(e.GetFamily()), typ, uint64(e.GetProto())); err != nil {
		return err
	}
	if err := m.prepare(); err != nil {
		return err
	}
	steps := []func() error{m.bind, m.listen, m.connect, m.options, m.shutdown}
	switch {
	case m.k.tcpConnection() && e.GetState() == tcpClose:
		// A connection that ended: bound as a closed socket; CloseTCP
		// gives it its peer and its unread bytes back, which need no
		// option, nothing reaching the peer.
		steps = []func() error{m.bind, m.options, m.shutdown}
		if !m.p.in.TCPClose {
			m.p.tcp.Ended = append(m.p.tcp.Ended, m.id)
		}
	case m.k.tcpConnection() && m.p.in.TCPClose:
		// Left unbound and unconnected: CloseTCP shuts it down.
		m.closeLater(skopts.SkShutdown_BOTH)
		steps = []func() error{m.options}
	case m.k.tcpConnection() && !m.p.in.TCPEstablished:
		return fmt.Errorf("an established TCP connection: restore with --tcp-established (or --tcp-close)")
	case m.k.tcpConnection():
		steps = []func() error{m.repair, m.options, m.shutdown}
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	m.p.b.Call(fmt.Sprintf("set status flags %#x on %v", e.GetFlags()&unix.O_NONBLOCK, m.k), unix.SYS_FCNTL,
		uint64(m.fd), unix.F_SETFL, uint64(e.GetFlags()&unix.O_NONBLOCK))
	return nil
}

// prepare sets what must be set before bind: IPV6_V6ONLY,
// SO_REUSEADDR and SO_REUSEPORT (on every socket until all of the task
// are bound, see reuse), the device it is bound to and, for IPv6,
// IP_FREEBIND (an address may still be tentative).
func (m *inetMaker) prepare() error {
	e, o := m.k.e, m.k.e.GetOpts()
	if e.GetV6Only() {
		m.setInt(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1, "set IPV6_V6ONLY")
	}
	m.setInt(unix.SOL_SOCKET, unix.SO_REUSEADDR, 1, "set SO_REUSEADDR until every socket is bound")
	m.setInt(unix.SOL_SOCKET, unix.SO_REUSEPORT, 1, "set SO_REUSEPORT until every socket is bound")
	m.p.fd.DeferToEnd(m.reuse)
	if dev := o.GetSoBoundDev(); dev != "" {
		b := m.p.b
		b.Call(fmt.Sprintf("bind %v to device %s", m.k, dev), unix.SYS_SETSOCKOPT, uint64(m.fd), unix.SOL_SOCKET,
			unix.SO_BINDTODEVICE, b.String(dev), uint64(len(dev)+1))
	}
	if m.freebindToBind() {
		m.setInt(unix.SOL_IP, unix.IP_FREEBIND, 1, "set IP_FREEBIND to bind")
	}
	return nil
}

// freebindToBind reports whether the socket is set IP_FREEBIND to
// bind: a bound IPv6 one but raw, which has no IP_FREEBIND at SOL_IP.
func (m *inetMaker) freebindToBind() bool {
	e := m.k.e
	return e.GetFamily() == unix.AF_INET6 && e.GetSrcPort() != 0 && e.GetType() != unix.SOCK_RAW
}

// bind binds the socket to its address, if it had a port (a raw
// socket's is its protocol).
func (m *inetMaker) bind() error {
	e := m.k.e
	if e.GetSrcPort() == 0 {
		return nil
	}
	sa := inetSockaddr(e.GetFamily(), m.k.src)
	b := m.p.b
	if ifname := e.GetIfname(); ifname != "" {
		// The scope of a link-local address: its interface, which the
		// kernel looks up in the socket's namespace (amber's index of
		// the name could be another namespace's).
		b.Call(fmt.Sprintf("bind %v to interface %s", m.k, ifname), unix.SYS_SETSOCKOPT, uint64(m.fd),
			unix.SOL_SOCKET, unix.SO_BINDTODEVICE, b.String(ifname), uint64(len(ifname)+1))
	}
	// A closed TCP socket's address may be held by the TIME_WAIT its
	// own connection left; repair mode lets it bind there again.
	repair := e.GetType() == unix.SOCK_STREAM && e.GetState() == tcpClose
	if repair {
		m.setInt(unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON, "turn repair mode on to bind")
	}
	b.Call(fmt.Sprintf("bind %v", m.k), unix.SYS_BIND, uint64(m.fd), b.Bytes(sa), uint64(len(sa)))
	if repair {
		// Leaving repair mode clears SO_REUSEADDR: set again, the
		// sockets bound after it on its port (a listener it was
		// accepted from) must find it shared.
		m.setInt(unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF, "turn repair mode off")
		m.setInt(unix.SOL_SOCKET, unix.SO_REUSEADDR, 1, "set SO_REUSEADDR again until every socket is bound")
	}
	return nil
}

func (m *inetMaker) listen() error {
	if e := m.k.e; e.GetState() == tcpListen {
		m.p.b.Call(fmt.Sprintf("listen on %v, backlog %d", m.k, e.GetBacklog()), unix.SYS_LISTEN, uint64(m.fd), uint64(e.GetBacklog()))
	}
	return nil
}

// connect connects a UDP, raw or ping socket to its peer.
func (m *inetMaker) connect() error {
	e := m.k.e
	if e.GetDstPort() == 0 || e.GetType() == unix.SOCK_STREAM {
		return nil
	}
	sa := inetSockaddr(e.GetFamily(), m.k.dst)
	b := m.p.b
	b.Call(fmt.Sprintf("connect %v", m.k), unix.SYS_CONNECT, uint64(m.fd), b.Bytes(sa), uint64(len(sa)))
	return nil
}

// shutdown shuts a connected socket down as it was; a closed TCP socket
// is shut down later (closeLater).
func (m *inetMaker) shutdown() error {
	how := m.k.e.GetShutdown()
	if how != skopts.SkShutdown_NONE && m.k.e.GetState() == tcpClose && m.k.e.GetProto() == unix.IPPROTO_TCP {
		m.closeLater(how)
		return nil
	}
	if how == skopts.SkShutdown_NONE || m.k.e.GetState() != tcpEstablished {
		return nil
	}
	m.p.b.Call(fmt.Sprintf("shut down %v (%v)", m.k, how), unix.SYS_SHUTDOWN, uint64(m.fd), uint64(how)-1)
	return nil
}

// reuse gives SO_REUSEADDR and SO_REUSEPORT their dumped values, once
// every socket of the task is bound: sockets that share a port (a
// listener and a connection accepted from it, listeners with
// SO_REUSEPORT) bind again while all allow it, whatever they allow now.
// A connection in repair mode keeps SO_REUSEADDR for EndTCPRepair:
// leaving repair mode clears it.
func (m *inetMaker) reuse() error {
	o := m.k.e.GetOpts()
	fd, _ := m.p.fd.Placed(m.id)
	if !o.GetReuseaddr() && !m.inRepair() {
		setsockoptInt(m.p.b, fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 0, fmt.Sprintf("clear SO_REUSEADDR on %v, as dumped", m.k))
	}
	if !o.GetSoReuseport() {
		setsockoptInt(m.p.b, fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 0, fmt.Sprintf("clear SO_REUSEPORT on %v, as dumped", m.k))
	}
	return nil
}

// closeLater has CloseTCP shut the socket down (how) once the task is
// restored.
func (m *inetMaker) closeLater(how skopts.SkShutdown) {
	if m.p.tcp.Shut == nil {
		m.p.tcp.Shut = map[uint32]skopts.SkShutdown{}
	}
	m.p.tcp.Shut[m.id] = how
}

// inRepair tells a connection restored in repair mode, which keeps
// SO_REUSEADDR until EndTCPRepair.
func (m *inetMaker) inRepair() bool {
	return m.k.tcpConnection() && m.k.e.GetState() != tcpClose && !m.p.in.TCPClose
}

// setInt plans setsockopt(fd, level, opt, &v, 4) on the socket.
func (m *inetMaker) setInt(level, opt int, v uint32, what string) {
	setsockoptInt(m.p.b, m.fd, level, opt, v, fmt.Sprintf("%s on %v", what, m.k))
}

// setsockoptInt plans setsockopt(fd, level, opt, &v, 4); the buffer
// sizes that go past the system's limits (SO_SNDBUFFORCE,
// SO_RCVBUFFORCE) are the privileged calls of a plan (amber makes them
// for a task in a user namespace of its own).
func setsockoptInt(b *plan.Builder, fd, level, opt int, v uint32, what string) {
	call := b.Call
	if level == unix.SOL_SOCKET && (opt == unix.SO_SNDBUFFORCE || opt == unix.SO_RCVBUFFORCE) {
		call = b.Privileged
	}
	call(what, unix.SYS_SETSOCKOPT, uint64(fd), uint64(level), uint64(opt), b.Bytes(binary.LittleEndian.AppendUint32(nil, v)), 4)
}
