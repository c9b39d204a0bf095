package sockets

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	skinet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-inet"
	skopts "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-opts"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// TestRawPingAccepted: raw sockets of any protocol and ping sockets are
// dumped and restored; other protocols are still refused, at dump and
// in the images.
func TestRawPingAccepted(t *testing.T) {
	cases := []struct {
		family, typ, proto int
		ok                 bool
	}{
		{unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP, true},
		{unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_UDP, true},
		{unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW, true},
		{unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6, true},
		{unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP, true},
		{unix.AF_INET6, unix.SOCK_DGRAM, unix.IPPROTO_ICMPV6, true},
		{unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP, false},
		{unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_SCTP, false},
	}
	for _, c := range cases {
		err := checkProto(&inetSock{family: c.family, typ: c.typ, proto: c.proto})
		if (err == nil) != c.ok {
			t.Errorf("checkProto(type %d proto %d) = %v, want ok %v", c.typ, c.proto, err, c.ok)
		}
		e := &skinet.InetSkEntry{Family: proto.Uint32(uint32(c.family)), Type: proto.Uint32(uint32(c.typ)),
			Proto: proto.Uint32(uint32(c.proto)), State: proto.Uint32(tcpClose), Opts: &skopts.SkOptsEntry{},
			SrcAddr: addrWords(netipZero(c.family), c.family), DstAddr: addrWords(netipZero(c.family), c.family)}
		if _, err := readInetImage(e); (err == nil) != c.ok {
			t.Errorf("image of type %d proto %d: %v, want ok %v", c.typ, c.proto, err, c.ok)
		}
	}
	e := &skinet.InetSkEntry{Family: proto.Uint32(unix.AF_INET), Type: proto.Uint32(unix.SOCK_RAW),
		Proto: proto.Uint32(unix.IPPROTO_TCP), State: proto.Uint32(tcpListen), Opts: &skopts.SkOptsEntry{},
		SrcAddr: []uint32{0}, DstAddr: []uint32{0}}
	if _, err := readInetImage(e); err == nil {
		t.Errorf("a listening raw TCP socket in the images: accepted")
	}
}

// TestDumpRawOpts reads the options of real raw sockets: the ICMP
// filter of an ICMP one, IP_NODEFRAG, and HDRINCL of an IPPROTO_RAW one
// (set by the kernel).
func TestDumpRawOpts(t *testing.T) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
	if errors.Is(err, unix.EPERM) {
		t.Skip("no CAP_NET_RAW: raw sockets cannot be made")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	filter := []byte{0xfe, 0xff, 0xff, 0xff} // only echo replies (type 0) in
	if err := unix.SetsockoptString(s, unix.SOL_RAW, icmpFilter, string(filter)); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(s, unix.SOL_IP, unix.IP_NODEFRAG, 1); err != nil {
		t.Fatal(err)
	}
	r, err := dumpRawOpts(s, &inetSock{family: unix.AF_INET, typ: unix.SOCK_RAW, proto: unix.IPPROTO_ICMP})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.IcmpvFilter, []uint32{0xfffffffe}) || !r.GetNodefrag() || r.Hdrincl != nil {
		t.Errorf("raw ICMP socket: %v, want filter 0xfffffffe, nodefrag, no hdrincl", r)
	}

	s6, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s6)
	r, err = dumpRawOpts(s6, &inetSock{family: unix.AF_INET6, typ: unix.SOCK_RAW, proto: unix.IPPROTO_RAW})
	if err != nil {
		t.Fatal(err)
	}
	if !r.GetHdrincl() || r.IcmpvFilter != nil || r.Nodefrag != nil {
		t.Errorf("raw IPv6 IPPROTO_RAW socket: %v, want hdrincl only", r)
	}
}

// netipZero is the unspecified address of family.
func netipZero(family int) netip.Addr {
	if family == unix.AF_INET6 {
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}
