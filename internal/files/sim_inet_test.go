package files

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"amber/internal/plan"
	"amber/internal/sockets"
)

// This file models inet sockets for fdSim: socket, bind, listen, connect
// (a UDP peer, or a TCP connection made in repair mode: no handshake is
// modelled), setsockopt with TCP repair's rules (queues, sequence
// numbers, options only in repair mode, sequence numbers only before
// connect), sending into a repair queue, and shutdown.

// simInet is an inet socket.
type simInet struct {
	family, typ, proto int
	bound, peer        []byte // struct sockaddr_in or _in6; nil: none
	listening          bool
	backlog            int
	repair             bool
	queue              int       // selected repair queue
	seq                [3]uint32 // TCP_QUEUE_SEQ by queue
	seqSet             [3]bool
	data               [3][]byte // bytes queued in repair mode, by queue
	opts               map[[2]int][]byte
	shutdown           int
}

// optInt is the value of an int option, and whether it was set.
func (k *simInet) optInt(level, opt int) (uint32, bool) {
	v, ok := k.opts[[2]int{level, opt}]
	if !ok || len(v) < 4 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(v), true
}

// inetCall carries out c if it concerns an inet socket, and reports
// whether it did.
func (s *fdSim) inetCall(c plan.Call) (bool, error) {
	a := c.Args
	if c.Nr == unix.SYS_SOCKET {
		if a[0] != unix.AF_INET && a[0] != unix.AF_INET6 {
			return false, nil
		}
		return true, s.inetSocket(a)
	}
	switch c.Nr {
	case unix.SYS_BIND, unix.SYS_LISTEN, unix.SYS_CONNECT, unix.SYS_SENDTO, unix.SYS_SETSOCKOPT, unix.SYS_SHUTDOWN:
	default:
		return false, nil
	}
	d, ok := s.fds[int(a[0])]
	if !ok || d.f.in == nil {
		return false, nil
	}
	k := d.f.in
	switch c.Nr {
	case unix.SYS_BIND:
		return true, s.inetBind(k, a)
	case unix.SYS_LISTEN:
		if k.typ != unix.SOCK_STREAM || k.bound == nil || k.peer != nil {
			return true, unix.EINVAL
		}
		k.listening, k.backlog = true, int(a[1])
	case unix.SYS_CONNECT:
		return true, s.inetConnect(k, a)
	case unix.SYS_SENDTO:
		return true, s.inetSend(k, a)
	case unix.SYS_SETSOCKOPT:
		return true, s.inetSetsockopt(k, a)
	case unix.SYS_SHUTDOWN:
		if k.peer == nil {
			return true, unix.ENOTCONN
		}
		k.shutdown |= int(a[1]) + 1
	}
	return true, nil
}

func (s *fdSim) inetSocket(a [6]uint64) error {
	typ := int(a[1] &^ (unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC))
	proto := int(a[2])
	ping := typ == unix.SOCK_DGRAM && (proto == unix.IPPROTO_ICMP || proto == unix.IPPROTO_ICMPV6)
	if !(typ == unix.SOCK_STREAM && proto == unix.IPPROTO_TCP) && !(typ == unix.SOCK_DGRAM && (proto == unix.IPPROTO_UDP || proto == unix.IPPROTO_UDPLITE)) &&
		typ != unix.SOCK_RAW && !ping {
		return fmt.Errorf("socket type %d protocol %d not modelled: %w", typ, proto, unix.EINVAL)
	}
	k := &simInet{family: int(a[0]), typ: typ, proto: proto, opts: map[[2]int][]byte{}}
	f := &simFile{kind: "inet", in: k, flags: a[1] & unix.SOCK_NONBLOCK}
	s.install(s.lowest(0), f, a[1]&unix.SOCK_CLOEXEC != 0)
	return nil
}

// sockaddr reads a sockaddr of k's family.
func (s *fdSim) inetAddr(k *simInet, addr, n uint64) ([]byte, error) {
	want := uint64(16)
	if k.family == unix.AF_INET6 {
		want = 28
	}
	if n != want {
		return nil, fmt.Errorf("address of %d bytes for family %d: %w", n, k.family, unix.EINVAL)
	}
	b, err := s.mem(addr, n)
	if err != nil {
		return nil, err
	}
	if int(binary.LittleEndian.Uint16(b)) != k.family {
		return nil, unix.EAFNOSUPPORT
	}
	return append([]byte(nil), b...), nil
}

// inetBind binds k; a port another socket of the task has is refused
// unless both allow reuse (SO_REUSEADDR, or repair mode's forced reuse).
func (s *fdSim) inetBind(k *simInet, a [6]uint64) error {
	sa, err := s.inetAddr(k, a[1], a[2])
	if err != nil {
		return err
	}
	if k.bound != nil {
		return unix.EINVAL
	}
	port := binary.BigEndian.Uint16(sa[2:])
	for _, d := range s.fds {
		o := d.f.in
		if o == nil || o == k || o.bound == nil || o.proto != k.proto || port == 0 || binary.BigEndian.Uint16(o.bound[2:]) != port {
			continue
		}
		if !o.reuses() || !k.reuses() {
			return fmt.Errorf("bind to port %d, taken: %w", port, unix.EADDRINUSE)
		}
	}
	k.bound = sa
	return nil
}

// reuses reports whether the socket lets others share its port.
func (k *simInet) reuses() bool {
	v, _ := k.optInt(unix.SOL_SOCKET, unix.SO_REUSEADDR)
	return v != 0 || k.repair
}

// inetConnect connects a UDP socket, or a bound TCP one in repair mode
// whose sequence numbers are set.
func (s *fdSim) inetConnect(k *simInet, a [6]uint64) error {
	sa, err := s.inetAddr(k, a[1], a[2])
	if err != nil {
		return err
	}
	if k.proto == unix.IPPROTO_TCP {
		switch {
		case !k.repair:
			return fmt.Errorf("TCP connect outside repair mode: a handshake is not modelled: %w", unix.ECONNREFUSED)
		case k.bound == nil:
			return fmt.Errorf("repair-mode connect of an unbound socket: %w", unix.EINVAL)
		case !k.seqSet[tcpRecvQueue] || !k.seqSet[tcpSendQueue]:
			return fmt.Errorf("repair-mode connect before both sequence numbers are set: %w", unix.EINVAL)
		}
	}
	k.peer = sa
	return nil
}

// inetSend queues bytes on the selected repair queue.
func (s *fdSim) inetSend(k *simInet, a [6]uint64) error {
	if !k.repair || k.peer == nil || k.queue == tcpNoQueue {
		return fmt.Errorf("send outside a repair queue is not modelled: %w", unix.EINVAL)
	}
	b, err := s.mem(a[1], a[2])
	if err != nil {
		return err
	}
	if a[4] != 0 || a[5] != 0 {
		return fmt.Errorf("sendto a connected socket with an address: %w", unix.EISCONN)
	}
	k.data[k.queue] = append(k.data[k.queue], b...)
	return nil
}

// inetSetsockopt records an option, with TCP repair's rules.
func (s *fdSim) inetSetsockopt(k *simInet, a [6]uint64) error {
	v, err := s.mem(a[3], a[4])
	if err != nil {
		return err
	}
	level, opt := int(a[1]), int(a[2])
	if level == unix.SOL_IP && k.family == unix.AF_INET6 && k.typ == unix.SOCK_RAW {
		return fmt.Errorf("IP option %d on a raw IPv6 socket: %w", opt, unix.ENOPROTOOPT)
	}
	if level == unix.IPPROTO_TCP && k.proto != unix.IPPROTO_TCP {
		return fmt.Errorf("TCP option %d on a UDP socket: %w", opt, unix.ENOPROTOOPT)
	}
	if level == unix.IPPROTO_TCP {
		if err := k.repairOpt(opt, v); err != nil {
			return err
		}
	}
	k.opts[[2]int{level, opt}] = append([]byte(nil), v...)
	return nil
}

// repairOpt applies TCP repair's options and refuses them out of order.
func (k *simInet) repairOpt(opt int, v []byte) error {
	val := func() uint32 { return binary.LittleEndian.Uint32(v) }
	switch opt {
	case unix.TCP_REPAIR:
		if k.listening {
			return unix.EPERM
		}
		k.repair = val() == unix.TCP_REPAIR_ON
	case unix.TCP_REPAIR_QUEUE:
		if !k.repair || val() > tcpSendQueue {
			return unix.EPERM
		}
		k.queue = int(val())
	case unix.TCP_QUEUE_SEQ:
		if !k.repair || k.peer != nil || k.queue == tcpNoQueue {
			return unix.EPERM
		}
		k.seq[k.queue], k.seqSet[k.queue] = val(), true
	case unix.TCP_REPAIR_OPTIONS, unix.TCP_REPAIR_WINDOW:
		if !k.repair || k.peer == nil {
			return unix.EPERM
		}
		if opt == unix.TCP_REPAIR_WINDOW && len(v) != 20 {
			return unix.EINVAL
		}
	case unix.TCP_TIMESTAMP:
		if !k.repair {
			return unix.EPERM
		}
	}
	return nil
}

// inetProblems lists how the socket at fd differs from what a socket of
// entry id, with stream st (nil: none), must be after PlanFds.
func inetProblems(s *fdSim, fd int, in *RestoreInput, id uint32) []string {
	var out []string
	bad := func(format string, args ...any) {
		out = append(out, fmt.Sprintf("fd %d: ", fd)+fmt.Sprintf(format, args...))
	}
	d, ok := s.fds[fd]
	if !ok || d.f.in == nil {
		return []string{fmt.Sprintf("fd %d: not an inet socket", fd)}
	}
	k, e := d.f.in, in.Files[id].GetIsk()
	if k.family != int(e.GetFamily()) || k.typ != int(e.GetType()) || k.proto != int(e.GetProto()) {
		bad("family %d type %d proto %d, want %d %d %d", k.family, k.typ, k.proto, e.GetFamily(), e.GetType(), e.GetProto())
	}
	if want := wantSockaddr(e.GetFamily(), e.GetSrcPort(), e.GetSrcAddr()); (e.GetSrcPort() != 0) != (k.bound != nil) || (k.bound != nil && !bytes.Equal(k.bound, want)) {
		bad("bound to %x, want %x", k.bound, want)
	}
	if k.listening != (e.GetState() == tcpListen) || (k.listening && k.backlog != int(e.GetBacklog())) {
		bad("listening %v backlog %d, want state %d backlog %d", k.listening, k.backlog, e.GetState(), e.GetBacklog())
	}
	if want := wantSockaddr(e.GetFamily(), e.GetDstPort(), e.GetDstAddr()); (e.GetDstPort() != 0) != (k.peer != nil) || (k.peer != nil && !bytes.Equal(k.peer, want)) {
		bad("connected to %x, want %x", k.peer, want)
	}
	if nb := d.f.flags&unix.O_NONBLOCK != 0; nb != (e.GetFlags()&unix.O_NONBLOCK != 0) {
		bad("O_NONBLOCK %v, want flags %#x", nb, e.GetFlags())
	}
	tcpConnection := e.GetProto() == unix.IPPROTO_TCP && e.GetDstPort() != 0
	reuse, _ := k.optInt(unix.SOL_SOCKET, unix.SO_REUSEADDR)
	if !tcpConnection && (reuse != 0) != e.GetOpts().GetReuseaddr() {
		bad("SO_REUSEADDR %d, want %v", reuse, e.GetOpts().GetReuseaddr())
	}
	if rp, _ := k.optInt(unix.SOL_SOCKET, unix.SO_REUSEPORT); (rp != 0) != e.GetOpts().GetSoReuseport() {
		bad("SO_REUSEPORT %d, want %v", rp, e.GetOpts().GetSoReuseport())
	}
	if tcpConnection {
		out = append(out, repairProblems(k, in.extra().TCPStreams[e.GetIno()], fd)...)
	}
	return out
}

// repairProblems lists how a connection made in repair mode differs from
// its stream: it must still be in repair mode, with its queues' first
// sequence numbers and bytes (the unsent ones are EndTCPRepair's).
func repairProblems(k *simInet, st *sockets.TCPStream, fd int) []string {
	var out []string
	bad := func(format string, args ...any) {
		out = append(out, fmt.Sprintf("fd %d: ", fd)+fmt.Sprintf(format, args...))
	}
	if st == nil {
		return []string{fmt.Sprintf("fd %d: no stream", fd)}
	}
	e := st.Entry
	if !k.repair {
		bad("not in repair mode any more")
	}
	if k.seq[tcpRecvQueue] != e.GetInqSeq()-e.GetInqLen() || k.seq[tcpSendQueue] != e.GetOutqSeq()-e.GetOutqLen() {
		bad("sequences %d/%d, want %d/%d", k.seq[tcpRecvQueue], k.seq[tcpSendQueue], e.GetInqSeq()-e.GetInqLen(), e.GetOutqSeq()-e.GetOutqLen())
	}
	if !bytes.Equal(k.data[tcpRecvQueue], st.In) {
		bad("receive queue of %d bytes, want %d", len(k.data[tcpRecvQueue]), len(st.In))
	}
	if sent := st.Out[:len(st.Out)-int(e.GetUnsqLen())]; !bytes.Equal(k.data[tcpSendQueue], sent) {
		bad("send queue of %d bytes, want the %d sent ones", len(k.data[tcpSendQueue]), len(sent))
	}
	if _, ok := k.opts[[2]int{unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW}]; !ok && e.SndWnd != nil {
		bad("windows not set")
	}
	return out
}
