package sockets

import (
	"encoding/binary"
	"fmt"

	skinet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-inet"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Raw sockets (SOCK_RAW, of any protocol) and ping sockets (SOCK_DGRAM
// with IPPROTO_ICMP or IPPROTO_ICMPV6), as CRIU's sk-inet.c keeps them:
// InetSkEntry like UDP sockets, with, for a raw socket, IpOptsRawEntry:
// IP_HDRINCL (IPV6_HDRINCL), IP_NODEFRAG and the ICMP_FILTER
// (ICMPV6_FILTER) of a raw ICMP socket. A raw socket's port is its
// protocol, which bind ignores; a ping socket's is its echo identifier,
// which bind restores (criu leaves ping sockets unbound).
//
// Neither a raw nor a ping socket connected without a port has a peer
// getpeername tells: such a socket is restored unconnected.

// Sizes of the ICMP filters, in 32-bit words: struct icmp_filter and
// struct icmp6_filter.
const (
	icmpFilterWords  = 1
	icmp6FilterWords = 8
	icmpFilter       = 1 // ICMP_FILTER of linux/icmp.h, at SOL_RAW
	icmpv6Filter     = 1 // ICMPV6_FILTER of linux/icmpv6.h, at SOL_ICMPV6
)

// pingSocket reports whether a socket of type and protocol is a ping
// socket.
func pingSocket(typ, proto int) bool {
	return typ == unix.SOCK_DGRAM && (proto == unix.IPPROTO_ICMP || proto == unix.IPPROTO_ICMPV6)
}

// rawOrPing reports whether a socket of type and protocol is a raw or
// a ping socket.
func rawOrPing(typ, proto int) bool {
	return typ == unix.SOCK_RAW || pingSocket(typ, proto)
}

// icmpFilterOpt is the level, option and size in words of the ICMP
// filter of a raw socket of family and protocol; ok is false if it has
// none.
func icmpFilterOpt(family, proto int) (level, opt, words int, ok bool) {
	switch {
	case family == unix.AF_INET && proto == unix.IPPROTO_ICMP:
		return unix.SOL_RAW, icmpFilter, icmpFilterWords, true
	case family == unix.AF_INET6 && proto == unix.IPPROTO_ICMPV6:
		return unix.SOL_ICMPV6, icmpv6Filter, icmp6FilterWords, true
	}
	return 0, 0, 0, false
}

// hdrinclOpt is the level and option of IP_HDRINCL for family.
func hdrinclOpt(family int) (level, opt int) {
	if family == unix.AF_INET6 {
		return unix.IPPROTO_IPV6, unix.IPV6_HDRINCL
	}
	return unix.SOL_IP, unix.IP_HDRINCL
}

// dumpRawOpts reads the options only raw sockets have.
func dumpRawOpts(s int, k *inetSock) (*skinet.IpOptsRawEntry, error) {
	r := &skinet.IpOptsRawEntry{}
	level, opt := hdrinclOpt(k.family)
	v, err := unix.GetsockoptInt(s, level, opt)
	if err != nil {
		return nil, fmt.Errorf("getsockopt HDRINCL: %w", err)
	}
	if v != 0 {
		r.Hdrincl = proto.Bool(true)
	}
	if k.family == unix.AF_INET {
		if v, err = unix.GetsockoptInt(s, unix.SOL_IP, unix.IP_NODEFRAG); err != nil {
			return nil, fmt.Errorf("getsockopt IP_NODEFRAG: %w", err)
		}
		if v != 0 {
			r.Nodefrag = proto.Bool(true)
		}
	}
	if level, opt, words, ok := icmpFilterOpt(k.family, k.proto); ok {
		b, err := getsockoptBytes(s, level, opt, 4*words)
		if err != nil || len(b) != 4*words {
			return nil, fmt.Errorf("getsockopt ICMP filter (%d bytes): %w", len(b), err)
		}
		r.IcmpvFilter = make([]uint32, words)
		for i := range r.IcmpvFilter {
			r.IcmpvFilter[i] = binary.LittleEndian.Uint32(b[4*i:])
		}
	}
	return r, nil
}

// rawOptions sets the options of a raw socket.
func (m *inetMaker) rawOptions(r *skinet.IpOptsRawEntry) error {
	e := m.k.e
	family, pr := int(e.GetFamily()), int(e.GetProto())
	if f := r.GetIcmpvFilter(); len(f) > 0 {
		level, opt, words, ok := icmpFilterOpt(family, pr)
		if !ok || len(f) != words {
			return fmt.Errorf("an ICMP filter of %d words on a raw socket of protocol %d", len(f), pr)
		}
		b := make([]byte, 0, 4*words)
		for _, w := range f {
			b = binary.LittleEndian.AppendUint32(b, w)
		}
		m.p.b.Call(fmt.Sprintf("set the ICMP filter of %v", m.k), unix.SYS_SETSOCKOPT, uint64(m.fd), uint64(level),
			uint64(opt), m.p.b.Bytes(b), uint64(len(b)))
	}
	if r.Nodefrag != nil {
		m.setInt(unix.SOL_IP, unix.IP_NODEFRAG, b2u(r.GetNodefrag()), "set IP_NODEFRAG")
	}
	if r.Hdrincl != nil {
		level, opt := hdrinclOpt(family)
		m.setInt(level, opt, b2u(r.GetHdrincl()), "set HDRINCL")
	}
	return nil
}
