package sockets

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// This file asks the kernel about unix sockets through sock_diag
// (NETLINK_SOCK_DIAG, linux/unix_diag.h), as CRIU's sk-unix.c does: a
// socket's peer, the connections waiting on a listener, its name and the
// inode of the file it is bound to are visible nowhere else.

// unixDiag is what sock_diag tells of one unix socket.
type unixDiag struct {
	ino   uint32
	typ   uint8 // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
	state uint8 // tcpEstablished, tcpClose or tcpListen
	// name is the bound address: empty when unbound, starting with a
	// NUL byte for the abstract namespace, else a path.
	name []byte
	// vfsIno and vfsDev are the inode of the socket file of a socket
	// bound to a path.
	vfsIno, vfsDev uint32
	peer           uint32   // inode of the peer, 0 if none or closed
	icons          []uint32 // listener: peers of the connections not accepted yet
	// rqlen and wqlen: a listener's backlog length and maximum; another
	// socket's bytes received and sent but not yet read.
	rqlen, wqlen uint32
	shutdown     uint8 // RCV_SHUTDOWN (1) | SEND_SHUTDOWN (2)
}

// Socket states of unix sockets (the TCP ones of net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpClose       = 7
	tcpListen      = 10
)

// Requests and attributes of linux/unix_diag.h.
const (
	udiagShowName  = 0x01
	udiagShowVFS   = 0x02
	udiagShowPeer  = 0x04
	udiagShowIcons = 0x08
	udiagShowRQLen = 0x10

	unixDiagName     = 0
	unixDiagVFS      = 1
	unixDiagPeer     = 2
	unixDiagIcons    = 3
	unixDiagRQLen    = 4
	unixDiagShutdown = 6

	unixDiagReqSize = 24 // struct unix_diag_req
	unixDiagMsgSize = 16 // struct unix_diag_msg
)

// listUnixSockets returns every unix socket of network namespace ns
// (amber's if nil), by inode.
func listUnixSockets(ns *netnsRef) (map[uint32]*unixDiag, error) {
	s, err := ns.diagSocket()
	if err != nil {
		return nil, err
	}
	defer unix.Close(s)
	if err := unix.Sendto(s, unixDiagRequest(1), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag: send: %w", err)
	}
	out := map[uint32]*unixDiag{}
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(s, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sock_diag: receive: %w", err)
		}
		done, err := parseUnixDiagReply(buf[:n], out)
		if err != nil || done {
			return out, err
		}
	}
}

// diagRequest is a sock_diag dump request (SOCK_DIAG_BY_FAMILY) with
// sequence number seq and a request body of size bytes, which the
// caller fills in r.
func diagRequest(seq uint32, size int) (b, r []byte) {
	b = make([]byte, unix.SizeofNlMsghdr+size)
	le := binary.LittleEndian
	le.PutUint32(b[0:], uint32(len(b)))
	le.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	le.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	le.PutUint32(b[8:], seq)
	return b, b[unix.SizeofNlMsghdr:]
}

// unixDiagRequest is a netlink dump request for all unix sockets, in all
// states, with every attribute amber reads.
func unixDiagRequest(seq uint32) []byte {
	b, r := diagRequest(seq, unixDiagReqSize)
	le := binary.LittleEndian
	r[0] = unix.AF_UNIX
	le.PutUint32(r[4:], ^uint32(0)) // every state
	le.PutUint32(r[12:], udiagShowName|udiagShowVFS|udiagShowPeer|udiagShowIcons|udiagShowRQLen)
	le.PutUint32(r[16:], ^uint32(0)) // no cookie
	le.PutUint32(r[20:], ^uint32(0))
	return b
}

// parseUnixDiagReply adds the sockets of one netlink reply to out and
// reports whether it was the last (NLMSG_DONE).
func parseUnixDiagReply(b []byte, out map[uint32]*unixDiag) (bool, error) {
	return eachNlMsg(b, func(body []byte) error {
		d, err := parseUnixDiagMsg(body)
		if err == nil {
			out[d.ino] = d
		}
		return err
	})
}

// parseUnixDiagMsg decodes one struct unix_diag_msg and its attributes.
func parseUnixDiagMsg(b []byte) (*unixDiag, error) {
	le := binary.LittleEndian
	if len(b) < unixDiagMsgSize {
		return nil, fmt.Errorf("sock_diag: unix_diag_msg of %d bytes", len(b))
	}
	d := &unixDiag{typ: b[1], state: b[2], ino: le.Uint32(b[4:])}
	for a := b[unixDiagMsgSize:]; len(a) >= 4; {
		l, typ := int(le.Uint16(a)), le.Uint16(a[2:])&nlaTypeMask
		if l < 4 || l > len(a) {
			return nil, fmt.Errorf("sock_diag: socket %d: attribute of %d bytes", d.ino, l)
		}
		if err := d.setAttr(typ, a[4:l]); err != nil {
			return nil, fmt.Errorf("sock_diag: socket %d: %w", d.ino, err)
		}
		a = a[min(nlAlign(l), len(a)):]
	}
	return d, nil
}

// setAttr stores one attribute of a unix_diag_msg.
func (d *unixDiag) setAttr(typ uint16, v []byte) error {
	le := binary.LittleEndian
	need := map[uint16]int{unixDiagVFS: 8, unixDiagPeer: 4, unixDiagRQLen: 8, unixDiagShutdown: 1}
	if n, ok := need[typ]; ok && len(v) < n {
		return fmt.Errorf("attribute %d of %d bytes, want %d", typ, len(v), n)
	}
	switch typ {
	case unixDiagName:
		d.name = append([]byte(nil), v...)
	case unixDiagVFS:
		d.vfsIno, d.vfsDev = le.Uint32(v), le.Uint32(v[4:])
	case unixDiagPeer:
		d.peer = le.Uint32(v)
	case unixDiagIcons:
		for ; len(v) >= 4; v = v[4:] {
			d.icons = append(d.icons, le.Uint32(v))
		}
	case unixDiagRQLen:
		d.rqlen, d.wqlen = le.Uint32(v), le.Uint32(v[4:])
	case unixDiagShutdown:
		d.shutdown = v[0]
	}
	return nil
}

// nlaTypeMask drops the NLA_F_NESTED and NLA_F_NET_BYTEORDER bits.
const nlaTypeMask = 0x3fff

func nlAlign(n int) int { return (n + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1) }
