package sockets

import (
	"bytes"
	"encoding/binary"
	"fmt"

	skinet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-inet"
	skopts "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-opts"
	tcpstream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// The options of inet sockets, as CRIU's sockets.c, sk-inet.c and
// sk-tcp.c keep them: the socket-level ones of every socket (unix.go's
// dumpSkOpts) and those only inet sockets use (SkOptsEntry), the IP ones
// (IpOptsEntry) and the TCP ones (TcpOptsEntry). A boolean option is
// kept, as criu keeps it, when set; a number when it is not zero.

// ipv6Freebind is IPV6_FREEBIND of linux/in6.h (Linux 4.15), which x/sys
// lacks; it sets the same flag as IP_FREEBIND.
const ipv6Freebind = 78

// intOpt is a socket option read as an int.
type intOpt struct {
	level, opt int
	name       string
}

// dumpInetOpts reads every option of inet socket s into ie.
func dumpInetOpts(s int, k *inetSock, ie *skinet.InetSkEntry) error {
	o, err := dumpSkOpts(s, k.family)
	if err != nil {
		return err
	}
	if err := dumpInetSkOpts(s, o); err != nil {
		return err
	}
	ie.Opts = o
	if ie.IpOpts, err = dumpIPOpts(s, k.family); err != nil {
		return err
	}
	if k.typ == unix.SOCK_RAW {
		if ie.IpOpts.Raw, err = dumpRawOpts(s, k); err != nil {
			return err
		}
	}
	if k.family == unix.AF_INET6 {
		v, err := unix.GetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		if err != nil {
			return fmt.Errorf("getsockopt IPV6_V6ONLY: %w", err)
		}
		ie.V6Only = proto.Bool(v != 0)
	}
	if k.typ == unix.SOCK_STREAM {
		ie.TcpOpts, err = dumpTCPOpts(s)
	}
	return err
}

// dumpInetSkOpts reads the socket-level options that dumpSkOpts leaves
// out: those only inet sockets use.
func dumpInetSkOpts(s int, o *skopts.SkOptsEntry) error {
	flags := []struct {
		opt int
		set **bool
	}{
		{unix.SO_REUSEPORT, &o.SoReuseport}, {unix.SO_BROADCAST, &o.SoBroadcast}, {unix.SO_KEEPALIVE, &o.SoKeepalive},
		{unix.SO_DONTROUTE, &o.SoDontroute}, {unix.SO_NO_CHECK, &o.SoNoCheck},
	}
	for _, f := range flags {
		v, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, f.opt)
		if err != nil {
			return fmt.Errorf("getsockopt %d: %w", f.opt, err)
		}
		*f.set = proto.Bool(v != 0)
	}
	for _, n := range []struct {
		opt int
		set **uint32
	}{{unix.SO_OOBINLINE, &o.SoOobinline}, {unix.SO_MARK, &o.SoMark}} {
		v, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, n.opt)
		if err != nil {
			return fmt.Errorf("getsockopt %d: %w", n.opt, err)
		}
		if v != 0 {
			*n.set = proto.Uint32(uint32(v))
		}
	}
	l, err := unix.GetsockoptLinger(s, unix.SOL_SOCKET, unix.SO_LINGER)
	if err != nil {
		return fmt.Errorf("getsockopt SO_LINGER: %w", err)
	}
	if l.Onoff != 0 {
		o.SoLinger = proto.Uint32(uint32(l.Linger))
	}
	dev, err := getsockoptBytes(s, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, unix.IFNAMSIZ)
	if err != nil {
		return fmt.Errorf("getsockopt SO_BINDTODEVICE: %w", err)
	}
	if name, _, _ := bytes.Cut(dev, []byte{0}); len(name) > 0 {
		o.SoBoundDev = proto.String(string(name))
	}
	return nil
}

// dumpIPOpts reads the IP options of a socket of family.
func dumpIPOpts(s, family int) (*skinet.IpOptsEntry, error) {
	o := &skinet.IpOptsEntry{}
	opts := []intOpt{
		{unix.SOL_IP, unix.IP_FREEBIND, "IP_FREEBIND"}, {unix.SOL_IP, unix.IP_PKTINFO, "IP_PKTINFO"},
		{unix.SOL_IP, unix.IP_TOS, "IP_TOS"}, {unix.SOL_IP, unix.IP_TTL, "IP_TTL"},
	}
	set := []func(int){
		func(int) { o.Freebind = proto.Bool(true) }, func(int) { o.Pktinfo = proto.Bool(true) },
		func(v int) { o.Tos = proto.Uint32(uint32(v)) }, func(v int) { o.Ttl = proto.Uint32(uint32(v)) },
	}
	if family == unix.AF_INET6 {
		opts = []intOpt{{unix.IPPROTO_IPV6, ipv6Freebind, "IPV6_FREEBIND"}, {unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO"}}
	}
	return o, readIntOpts(s, opts, set)
}

// tcpIntOpts are the TCP options kept, in TcpOptsEntry's order.
var tcpIntOpts = []intOpt{
	{unix.IPPROTO_TCP, unix.TCP_CORK, "TCP_CORK"}, {unix.IPPROTO_TCP, unix.TCP_NODELAY, "TCP_NODELAY"},
	{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, "TCP_KEEPCNT"}, {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, "TCP_KEEPIDLE"},
	{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, "TCP_KEEPINTVL"},
}

// dumpTCPOpts reads the TCP options of socket s.
func dumpTCPOpts(s int) (*tcpstream.TcpOptsEntry, error) {
	o := &tcpstream.TcpOptsEntry{}
	set := []func(int){
		func(int) { o.Cork = proto.Bool(true) }, func(int) { o.Nodelay = proto.Bool(true) },
		func(v int) { o.Keepcnt = proto.Uint32(uint32(v)) }, func(v int) { o.Keepidle = proto.Uint32(uint32(v)) },
		func(v int) { o.Keepintvl = proto.Uint32(uint32(v)) },
	}
	return o, readIntOpts(s, tcpIntOpts, set)
}

// readIntOpts reads each option of opts and hands a set one (non-zero)
// to the setter of the same index.
func readIntOpts(s int, opts []intOpt, set []func(int)) error {
	for i, op := range opts {
		v, err := unix.GetsockoptInt(s, op.level, op.opt)
		if err != nil {
			return fmt.Errorf("getsockopt %s: %w", op.name, err)
		}
		if v != 0 {
			set[i](v)
		}
	}
	return nil
}

// options sets the dumped options of the socket, after it is bound and
// connected: socket-level, IP and TCP ones.
func (m *inetMaker) options() error {
	m.skOptions()
	m.ipOptions()
	m.tcpOptions()
	if r := m.k.e.GetIpOpts().GetRaw(); r != nil && m.k.e.GetType() == unix.SOCK_RAW {
		return m.rawOptions(r)
	}
	return nil
}

// skOptions sets the socket-level options but SO_REUSEADDR and
// SO_REUSEPORT (reuse).
func (m *inetMaker) skOptions() {
	o := m.k.e.GetOpts()
	if v := o.GetSoSndbuf(); v != 0 {
		m.setInt(unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, v/2, "set the send buffer")
	}
	if v := o.GetSoRcvbuf(); v != 0 {
		m.setInt(unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, v/2, "set the receive buffer")
	}
	if o.SoBufLock != nil {
		m.setInt(unix.SOL_SOCKET, unix.SO_BUF_LOCK, o.GetSoBufLock(), "set SO_BUF_LOCK")
	}
	nums := []struct {
		v   uint32
		opt int
	}{{o.GetSoPriority(), unix.SO_PRIORITY}, {o.GetSoMark(), unix.SO_MARK}, {o.GetSoOobinline(), unix.SO_OOBINLINE}}
	if o.GetSoRcvlowat() > 1 {
		nums = append(nums, struct {
			v   uint32
			opt int
		}{o.GetSoRcvlowat(), unix.SO_RCVLOWAT})
	}
	for _, n := range nums {
		if n.v != 0 {
			m.setInt(unix.SOL_SOCKET, n.opt, n.v, fmt.Sprintf("set socket option %d", n.opt))
		}
	}
	for _, f := range []struct {
		on  bool
		opt int
	}{{o.GetSoDontroute(), unix.SO_DONTROUTE}, {o.GetSoNoCheck(), unix.SO_NO_CHECK}, {o.GetSoBroadcast(), unix.SO_BROADCAST},
		{o.GetSoKeepalive(), unix.SO_KEEPALIVE}} {
		if f.on {
			m.setInt(unix.SOL_SOCKET, f.opt, 1, fmt.Sprintf("set socket option %d", f.opt))
		}
	}
	m.linger(o)
	planFilter(m.p.b, m.fd, o.GetSoFilter(), m.k.String())
	m.timeout(unix.SO_SNDTIMEO, o.GetSoSndTmoSec(), o.GetSoSndTmoUsec())
	m.timeout(unix.SO_RCVTIMEO, o.GetSoRcvTmoSec(), o.GetSoRcvTmoUsec())
}

// linger sets SO_LINGER if it was on.
func (m *inetMaker) linger(o *skopts.SkOptsEntry) {
	if o.SoLinger == nil {
		return
	}
	b := m.p.b
	l := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 1), o.GetSoLinger())
	b.Call(fmt.Sprintf("set SO_LINGER %ds on %v", o.GetSoLinger(), m.k), unix.SYS_SETSOCKOPT, uint64(m.fd),
		unix.SOL_SOCKET, unix.SO_LINGER, b.Bytes(l), 8)
}

// timeout sets a non-zero SO_SNDTIMEO or SO_RCVTIMEO.
func (m *inetMaker) timeout(opt int, sec, usec uint64) {
	if sec == 0 && usec == 0 {
		return
	}
	b := m.p.b
	tv := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, sec), usec)
	b.Call(fmt.Sprintf("set timeout %d of %v", opt, m.k), unix.SYS_SETSOCKOPT, uint64(m.fd), unix.SOL_SOCKET, uint64(opt), b.Bytes(tv), 16)
}

// ipOptions sets the IP options. IP_FREEBIND, set on IPv6 sockets to
// bind, gets its dumped value back.
func (m *inetMaker) ipOptions() {
	e, o := m.k.e, m.k.e.GetIpOpts()
	if o == nil {
		o = &skinet.IpOptsEntry{}
	}
	if e.GetFamily() == unix.AF_INET6 {
		if o.GetFreebind() {
			m.setInt(unix.IPPROTO_IPV6, ipv6Freebind, 1, "set IPV6_FREEBIND")
		} else if m.freebindToBind() {
			m.setInt(unix.SOL_IP, unix.IP_FREEBIND, 0, "clear IP_FREEBIND, set to bind")
		}
		if o.GetPktinfo() {
			m.setInt(unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1, "set IPV6_RECVPKTINFO")
		}
		return
	}
	if o.GetFreebind() {
		m.setInt(unix.SOL_IP, unix.IP_FREEBIND, 1, "set IP_FREEBIND")
	}
	if o.GetPktinfo() {
		m.setInt(unix.SOL_IP, unix.IP_PKTINFO, 1, "set IP_PKTINFO")
	}
	if o.Tos != nil {
		m.setInt(unix.SOL_IP, unix.IP_TOS, o.GetTos(), "set IP_TOS")
	}
	if o.Ttl != nil {
		m.setInt(unix.SOL_IP, unix.IP_TTL, o.GetTtl(), "set IP_TTL")
	}
}

// tcpOptions sets the TCP options; images of old criu versions keep the
// keepalive ones in SkOptsEntry.
func (m *inetMaker) tcpOptions() {
	e := m.k.e
	if e.GetType() != unix.SOCK_STREAM {
		return
	}
	o, so := e.GetTcpOpts(), e.GetOpts()
	if o == nil {
		o = &tcpstream.TcpOptsEntry{}
	}
	vals := []uint32{b2u(o.GetCork()), b2u(o.GetNodelay()), firstSet(o.Keepcnt, so.TcpKeepcnt),
		firstSet(o.Keepidle, so.TcpKeepidle), firstSet(o.Keepintvl, so.TcpKeepintvl)}
	for i, v := range vals {
		if v != 0 {
			op := tcpIntOpts[i]
			m.setInt(op.level, op.opt, v, "set "+op.name)
		}
	}
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// firstSet is the first of the optional values that is set, or 0.
func firstSet(vals ...*uint32) uint32 {
	for _, v := range vals {
		if v != nil {
			return *v
		}
	}
	return 0
}
