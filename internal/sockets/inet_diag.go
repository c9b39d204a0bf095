package sockets

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	skopts "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-opts"
	"golang.org/x/sys/unix"
)

// This file asks sock_diag (NETLINK_SOCK_DIAG, linux/inet_diag.h) how
// inet sockets were shut down, as CRIU's sk-inet.c does: no socket
// option tells it, and poll shows only a receive shutdown.

// Requests and attributes of linux/inet_diag.h.
const (
	inetDiagReqSize  = 56 // struct inet_diag_req_v2
	inetDiagMsgSize  = 72 // struct inet_diag_msg
	inetDiagShutdown = 8  // INET_DIAG_SHUTDOWN
)

// inetDiag is what sock_diag tells of one inet socket.
type inetDiag struct {
	state    uint8
	shutdown uint8 // RCV_SHUTDOWN (1) | SEND_SHUTDOWN (2)
	// dst is the peer's address, which getpeername does not tell of a
	// socket still sending its SYN.
	dst netip.AddrPort
}

// inetDump is what a dump keeps of inet sockets: the shutdown states
// sock_diag gave, by family and protocol, and the TCP connections it put
// in repair mode (tcp.go).
type inetDump struct {
	diag map[inetDiagKey]map[uint32]inetDiag
	tcp  tcpDump
}

// inetDiagKey names one sock_diag listing: a family and protocol in a
// network namespace (its inode).
type inetDiagKey struct {
	family, proto int
	ns            uint64
}

// inetSockets returns d's inet state, made on first use.
func (d *Dumper) inetSockets() *inetDump {
	if d.inet == nil {
		d.inet = &inetDump{diag: map[inetDiagKey]map[uint32]inetDiag{}, tcp: tcpDump{streams: map[uint32]*TCPStream{}}}
	}
	return d.inet
}

// readShutdown learns how socket k (s) was shut down: from sock_diag,
// or, if it does not know the socket, from poll (POLLRDHUP is a receive
// shutdown, POLLHUP both directions). Only a connected socket's counts,
// and a closed TCP socket's (a connection that ended), which sock_diag
// does not list.
func (d *Dumper) readShutdown(s int, k *inetSock) error {
	if k.state == tcpClose && k.proto == unix.IPPROTO_TCP {
		return k.pollClosedShutdown(s)
	}
	if !repairable(k.state) {
		return nil
	}
	in := d.inetSockets()
	key := inetDiagKey{k.family, k.proto, d.netns.curIno()}
	if in.diag[key] == nil {
		all, err := listInetSockets(d.netns.cur, k.family, k.proto)
		if err != nil {
			all = map[uint32]inetDiag{} // no diag module for the protocol: poll
		}
		in.diag[key] = all
	}
	if dg, ok := in.diag[key][k.ino]; ok {
		k.shutdown = skopts.SkShutdown(dg.shutdown & 3)
		if k.state == tcpSynSent && !k.dst.IsValid() {
			k.dst = dg.dst
		}
		return nil
	}
	return k.pollShutdown(s)
}

// pollClosedShutdown learns, as CRIU does, whether a closed TCP socket
// was shut down for reading (POLLRDHUP): poll says POLLHUP of every
// closed socket, one that never connected too, so the send side cannot
// be told; a write to a closed socket fails with EPIPE anyway.
func (k *inetSock) pollClosedShutdown(s int) error {
	pfd := []unix.PollFd{{Fd: int32(s), Events: unix.POLLRDHUP | unix.POLLHUP}}
	if _, err := unix.Poll(pfd, 0); err != nil {
		return fmt.Errorf("poll for its shutdown state: %w", err)
	}
	if pfd[0].Revents&unix.POLLRDHUP != 0 {
		k.shutdown = skopts.SkShutdown_READ
	}
	return nil
}

// pollShutdown learns the shutdown state from poll.
func (k *inetSock) pollShutdown(s int) error {
	pfd := []unix.PollFd{{Fd: int32(s), Events: unix.POLLRDHUP | unix.POLLHUP}}
	if _, err := unix.Poll(pfd, 0); err != nil {
		return fmt.Errorf("poll for its shutdown state: %w", err)
	}
	switch ev := pfd[0].Revents; {
	case ev&unix.POLLHUP != 0:
		k.shutdown = skopts.SkShutdown_BOTH
	case ev&unix.POLLRDHUP != 0:
		k.shutdown = skopts.SkShutdown_READ
	}
	return nil
}

// listInetSockets returns the sockets of family and protocol in network
// namespace ns (amber's if nil), by inode.
func listInetSockets(ns *netnsRef, family, proto int) (map[uint32]inetDiag, error) {
	out := map[uint32]inetDiag{}
	err := sockDiagDump(ns, inetDiagRequest(family, proto), func(body []byte) error {
		if len(body) < inetDiagMsgSize {
			return fmt.Errorf("sock_diag: inet_diag_msg of %d bytes", len(body))
		}
		dg := inetDiag{state: body[1], dst: diagDst(body)}
		for a := body[inetDiagMsgSize:]; len(a) >= 4; {
			l, typ := int(binary.LittleEndian.Uint16(a)), binary.LittleEndian.Uint16(a[2:])&nlaTypeMask
			if l < 4 || l > len(a) {
				return fmt.Errorf("sock_diag: attribute of %d bytes", l)
			}
			if typ == inetDiagShutdown && l > 4 {
				dg.shutdown = a[4]
			}
			a = a[min(nlAlign(l), len(a)):]
		}
		out[binary.LittleEndian.Uint32(body[68:])] = dg
		return nil
	})
	return out, err
}

// diagDst is the peer address of an inet_diag_msg: its id's dport (big
// endian) and dst (4 or 16 bytes, by family).
func diagDst(body []byte) netip.AddrPort {
	port := binary.BigEndian.Uint16(body[6:])
	if body[0] == unix.AF_INET {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[24:28])), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[24:40])), port)
}

// inetDiagRequest is a netlink dump request for every socket of family
// and protocol, in every state.
func inetDiagRequest(family, proto int) []byte {
	b, r := diagRequest(1, inetDiagReqSize)
	le := binary.LittleEndian
	r[0], r[1] = byte(family), byte(proto)
	le.PutUint32(r[4:], ^uint32(0))  // every state
	le.PutUint32(r[48:], ^uint32(0)) // no cookie
	le.PutUint32(r[52:], ^uint32(0))
	return b
}

// sockDiagDump sends a sock_diag dump request in network namespace ns
// and hands the body of each reply message to each, until NLMSG_DONE.
func sockDiagDump(ns *netnsRef, req []byte, each func(body []byte) error) error {
	s, err := ns.diagSocket()
	if err != nil {
		return err
	}
	defer unix.Close(s)
	if err := unix.Sendto(s, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sock_diag: send: %w", err)
	}
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(s, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sock_diag: receive: %w", err)
		}
		done, err := eachNlMsg(buf[:n], each)
		if err != nil || done {
			return err
		}
	}
}

// eachNlMsg hands the SOCK_DIAG_BY_FAMILY messages of one reply to each
// and reports whether the reply ended the dump.
func eachNlMsg(b []byte, each func(body []byte) error) (bool, error) {
	le := binary.LittleEndian
	for len(b) >= unix.SizeofNlMsghdr {
		l, typ := int(le.Uint32(b)), le.Uint16(b[4:])
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return false, fmt.Errorf("sock_diag: message of %d bytes in a reply of %d", l, len(b))
		}
		body := b[unix.SizeofNlMsghdr:l]
		switch typ {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if len(body) >= 4 && int32(le.Uint32(body)) != 0 {
				return false, fmt.Errorf("sock_diag: %w", unix.Errno(-int32(le.Uint32(body))))
			}
			return false, fmt.Errorf("sock_diag: error reply")
		case unix.SOCK_DIAG_BY_FAMILY:
			if err := each(body); err != nil {
				return false, err
			}
		}
		b = b[min(nlAlign(l), len(b)):]
	}
	return false, nil
}
