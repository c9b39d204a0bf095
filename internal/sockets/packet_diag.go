package sockets

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// This file asks sock_diag (linux/packet_diag.h) about packet sockets,
// as CRIU's sk-packet.c does: the interface, version, reserve, flags,
// multicast memberships, fanout and rings of a packet socket are told
// there whole; getsockopt has no read for several of them.

// Requests and attributes of linux/packet_diag.h.
const (
	packetShowInfo    = 0x01
	packetShowMclist  = 0x02
	packetShowRingCfg = 0x04
	packetShowFanout  = 0x08

	packetDiagInfo   = 0
	packetDiagMclist = 1
	packetDiagRxRing = 2
	packetDiagTxRing = 3
	packetDiagFanout = 4

	packetDiagReqSize    = 20 // struct packet_diag_req
	packetDiagMsgSize    = 16 // struct packet_diag_msg
	packetDiagInfoSize   = 24 // struct packet_diag_info
	packetDiagMclistSize = 44 // struct packet_diag_mclist
	packetDiagRingSize   = 28 // struct packet_diag_ring

	// pdi_flags of struct packet_diag_info.
	pdiAuxdata = 0x2
	pdiOrigdev = 0x4
	pdiVnethdr = 0x8
	pdiLoss    = 0x10
)

// packetDiag is what sock_diag tells of one packet socket.
type packetDiag struct {
	ino   uint32
	typ   uint8
	proto uint16 // in network order, as socket() takes it
	// From struct packet_diag_info.
	ifindex, version, reserve, copyThresh, tstamp, flags uint32
	mclist                                               []packetMc
	fanout                                               *uint32
	rx, tx                                               *packetRing
}

// packetMc is one multicast membership (struct packet_diag_mclist).
type packetMc struct {
	ifindex, count uint32
	typ            uint16
	addr           []byte
}

// packetRing is a ring's setup (struct packet_diag_ring), the fields of
// struct tpacket_req3 in its order.
type packetRing [7]uint32

// listPacketSockets returns every packet socket of network namespace ns,
// by inode.
func listPacketSockets(ns *netnsRef) (map[uint32]*packetDiag, error) {
	out := map[uint32]*packetDiag{}
	err := sockDiagDump(ns, packetDiagRequest(), func(body []byte) error {
		d, err := parsePacketDiag(body)
		if err == nil {
			out[d.ino] = d
		}
		return err
	})
	return out, err
}

// packetDiagRequest is a netlink dump request for every packet socket
// with what amber keeps of them.
func packetDiagRequest() []byte {
	b, r := diagRequest(1, packetDiagReqSize)
	le := binary.LittleEndian
	r[0] = unix.AF_PACKET
	le.PutUint32(r[8:], packetShowInfo|packetShowMclist|packetShowRingCfg|packetShowFanout)
	le.PutUint32(r[12:], ^uint32(0)) // no cookie
	le.PutUint32(r[16:], ^uint32(0))
	return b
}

// parsePacketDiag decodes one struct packet_diag_msg and its attributes.
func parsePacketDiag(b []byte) (*packetDiag, error) {
	le := binary.LittleEndian
	if len(b) < packetDiagMsgSize {
		return nil, fmt.Errorf("sock_diag: packet_diag_msg of %d bytes", len(b))
	}
	// pdiag_num is the protocol in host order; socket() wants it in
	// network order.
	d := &packetDiag{typ: b[1], proto: swap16(le.Uint16(b[2:])), ino: le.Uint32(b[4:])}
	for a := b[packetDiagMsgSize:]; len(a) >= 4; {
		l, typ := int(le.Uint16(a)), le.Uint16(a[2:])&nlaTypeMask
		if l < 4 || l > len(a) {
			return nil, fmt.Errorf("sock_diag: packet socket %d: attribute of %d bytes", d.ino, l)
		}
		if err := d.setAttr(typ, a[4:l]); err != nil {
			return nil, fmt.Errorf("sock_diag: packet socket %d: %w", d.ino, err)
		}
		a = a[min(nlAlign(l), len(a)):]
	}
	return d, nil
}

func swap16(v uint16) uint16 { return v<<8 | v>>8 }

// setAttr stores one attribute of a packet_diag_msg.
func (d *packetDiag) setAttr(typ uint16, v []byte) error {
	le := binary.LittleEndian
	need := map[uint16]int{packetDiagInfo: packetDiagInfoSize, packetDiagRxRing: packetDiagRingSize,
		packetDiagTxRing: packetDiagRingSize, packetDiagFanout: 4}
	if n, ok := need[typ]; ok && len(v) < n {
		return fmt.Errorf("attribute %d of %d bytes, want %d", typ, len(v), n)
	}
	switch typ {
	case packetDiagInfo:
		d.ifindex, d.version, d.reserve = le.Uint32(v), le.Uint32(v[4:]), le.Uint32(v[8:])
		d.copyThresh, d.tstamp, d.flags = le.Uint32(v[12:]), le.Uint32(v[16:]), le.Uint32(v[20:])
	case packetDiagMclist:
		for ; len(v) >= packetDiagMclistSize; v = v[packetDiagMclistSize:] {
			alen := min(int(le.Uint16(v[10:])), packetDiagMclistSize-12)
			d.mclist = append(d.mclist, packetMc{ifindex: le.Uint32(v), count: le.Uint32(v[4:]),
				typ: le.Uint16(v[8:]), addr: append([]byte(nil), v[12:12+alen]...)})
		}
	case packetDiagRxRing, packetDiagTxRing:
		var r packetRing
		for i := range r {
			r[i] = le.Uint32(v[4*i:])
		}
		if typ == packetDiagRxRing {
			d.rx = &r
		} else {
			d.tx = &r
		}
	case packetDiagFanout:
		f := le.Uint32(v)
		d.fanout = &f
	}
	return nil
}
