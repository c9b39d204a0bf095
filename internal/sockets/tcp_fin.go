package sockets

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"amber/internal/netfilter"
)

// Half-closed connections, as CRIU's libsoccr restores them.
//
// A connection in CLOSE_WAIT, LAST_ACK or CLOSING has received its
// peer's FIN: the FIN counts in the receive sequence (rcv_nxt is one past
// it) but not in the receive queue's bytes. One in FIN_WAIT1, FIN_WAIT2,
// CLOSING or LAST_ACK has queued its own: it counts in the send sequence
// (write_seq), and the dump takes it out of the send queue's lengths, as
// CRIU's does. Repair mode makes only ESTABLISHED connections, so the
// restore makes it established short of its FINs (its receive window one
// wider for the peer's), and, once every task of the tree is in place,
// replays them in order (finSteps), those that send nothing on every
// connection before any of the others: the peer's FIN or its
// acknowledgement of the connection's own as a segment made by amber,
// from the peer's address, that the kernel takes as it took the first;
// the connection's own with shutdown, in repair mode if it was sent
// already, else after the bytes never sent. The kernel acknowledges a
// FIN, as it did the first time: a peer that still exists takes the
// acknowledgement as a duplicate; one gone for good answers it with a
// reset, as it would have answered the task's next segment.

// finWait bounds the wait for a FIN made by amber to reach its socket.
const finWait = time.Second

// TCP header flags of the segments amber makes.
const (
	tcpFlagFIN = 0x01
	tcpFlagRST = 0x04
	tcpFlagACK = 0x10
)

// finTCPHeader is a 20-byte TCP header of a segment from src to dst with
// flags (ACK of ack, and FIN or not), with its checksum.
func finTCPHeader(src, dst netip.AddrPort, seq, ack uint32, flags byte, window uint16) []byte {
	be := binary.BigEndian
	h := be.AppendUint16(nil, src.Port())
	h = be.AppendUint16(h, dst.Port())
	h = be.AppendUint32(h, seq)
	h = be.AppendUint32(h, ack)
	h = append(h, 5<<4, flags) // data offset 5 words
	h = be.AppendUint16(h, window)
	h = append(h, 0, 0, 0, 0) // checksum, urgent pointer
	be.PutUint16(h[16:], tcpChecksum(src.Addr(), dst.Addr(), h))
	return h
}

// tcpChecksum is the TCP checksum of segment seg (its checksum field
// zero) from src to dst: over the pseudo-header and the segment.
func tcpChecksum(src, dst netip.Addr, seg []byte) uint16 {
	var pseudo []byte
	be := binary.BigEndian
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		pseudo = append(append(pseudo, s[:]...), d[:]...)
		pseudo = append(pseudo, 0, unix.IPPROTO_TCP)
		pseudo = be.AppendUint16(pseudo, uint16(len(seg)))
	} else {
		s, d := src.As16(), dst.As16()
		pseudo = append(append(pseudo, s[:]...), d[:]...)
		pseudo = be.AppendUint32(pseudo, uint32(len(seg)))
		pseudo = append(pseudo, 0, 0, 0, unix.IPPROTO_TCP)
	}
	var sum uint32
	for _, b := range [][]byte{pseudo, seg} {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(be.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// finPacket is the IP packet, header included, of a segment with flags
// from src to dst: IPv4 if both are (or map) IPv4 addresses, else IPv6.
func finPacket(src, dst netip.AddrPort, seq, ack uint32, flags byte, window uint16) (pkt []byte, v4 bool) {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	tcp := finTCPHeader(src, dst, seq, ack, flags, window)
	be := binary.BigEndian
	if src.Addr().Is4() {
		// The kernel fills in the total length, the ID and the checksum.
		s, d := src.Addr().As4(), dst.Addr().As4()
		ip := []byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, unix.IPPROTO_TCP, 0, 0}
		return append(append(append(ip, s[:]...), d[:]...), tcp...), true
	}
	s, d := src.Addr().As16(), dst.Addr().As16()
	ip := be.AppendUint32(nil, 6<<28)
	ip = be.AppendUint16(ip, uint16(len(tcp)))
	ip = append(ip, unix.IPPROTO_TCP, 64)
	return append(append(append(ip, s[:]...), d[:]...), tcp...), false
}

// sendSegment sends, from dst to src, a segment with flags and sequence
// number seq acknowledging ack, through a raw socket of amber's made in
// the network namespace of the connection's socket conn: one made in
// amber's would route the segment through amber's loopback, where no
// socket of a tree in a namespace of its own (a container) sees it.
func sendSegment(conn int, src, dst netip.AddrPort, seq, ack uint32, flags byte, window uint16) error {
	pkt, v4 := finPacket(dst, src, seq, ack, flags, window)
	family, level, opt := unix.AF_INET, unix.IPPROTO_IP, unix.IP_HDRINCL
	if !v4 {
		family, level, opt = unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_HDRINCL
	}
	s, err := socketBeside(conn, func() (int, error) {
		return unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	})
	if err != nil {
		return fmt.Errorf("raw socket to send a segment of its peer's: %w", err)
	}
	defer unix.Close(s)
	// The network lock of the dump, still on, lets marked packets pass.
	if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_MARK, netfilter.Mark); err != nil {
		return fmt.Errorf("raw socket to send a segment of its peer's: SO_MARK: %w", err)
	}
	if err := unix.SetsockoptInt(s, level, opt, 1); err != nil {
		return fmt.Errorf("raw socket to send a segment of its peer's: header included: %w", err)
	}
	var to unix.Sockaddr
	if a := src.Addr().Unmap(); v4 {
		to = &unix.SockaddrInet4{Addr: a.As4()}
	} else {
		to = &unix.SockaddrInet6{Addr: a.As16()}
	}
	if err := unix.Sendto(s, pkt, 0, to); err != nil {
		return fmt.Errorf("send a segment of its peer's: %w", err)
	}
	return nil
}

// finStep is one step of replaying the FINs of a half-closed
// connection.
type finStep struct {
	kind  finStepKind
	flags byte   // finPeer: the flags of the peer's segment
	want  uint32 // finPeer: the state it leaves the connection in
}

// finStepKind is what a finStep does.
type finStepKind int

const (
	finOwnSent finStepKind = iota // queue its own FIN as sent already (shutdown, send queue selected)
	finOwnSend                    // queue its own FIN to be sent now, after the bytes never sent
	finPeer                       // hand it a segment of its peer's
)

// finSteps is how a connection restored established, in repair mode,
// gets back to the dumped state: quiet steps, which send nothing its
// peer could take as data or a FIN, and loud ones, after its bytes never
// sent are written. EndTCPRepair takes the quiet steps of every
// connection before it writes any byte or FIN: a peer in the tree must
// be in its dumped state when they reach it. A connection whose own FIN
// amber replayed first, for one, would take its peer's FIN, or bytes
// its window lets in, as a connection established would (FIN_WAIT2
// would end up in CLOSE_WAIT, then LAST_ACK, then closed by the
// acknowledgement of its FIN that amber sends). The peer's FIN comes
// before the connection's own in LAST_ACK, after it in CLOSING, as they
// came.
func finSteps(state uint32) (quiet, loud []finStep) {
	peerFIN := finStep{kind: finPeer, flags: tcpFlagFIN | tcpFlagACK, want: tcpCloseWait}
	switch state {
	case tcpCloseWait:
		return []finStep{peerFIN}, nil
	case tcpLastAck:
		return []finStep{peerFIN}, []finStep{{kind: finOwnSend}}
	case tcpFinWait1:
		return nil, []finStep{{kind: finOwnSend}}
	case tcpFinWait2:
		return []finStep{{kind: finOwnSent}, {kind: finPeer, flags: tcpFlagACK, want: tcpFinWait2}}, nil
	case tcpClosing:
		return nil, []finStep{{kind: finOwnSend}, {kind: finPeer, flags: tcpFlagFIN | tcpFlagACK, want: tcpClosing}}
	}
	return nil, nil
}

// replayFINs takes steps of finSteps on a restored connection in repair
// mode.
func (c *restoredConn) replayFINs(steps []finStep) error {
	for _, st := range steps {
		var err error
		switch st.kind {
		case finOwnSent:
			err = c.shutdownRepair(tcpSendQueue)
		case finOwnSend:
			err = c.shutdownRepair(tcpNoQueue)
		case finPeer:
			err = c.peerSegment(st.flags, st.want)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// shutdownRepair queues the connection's own FIN in repair mode: as sent
// already with queue tcpSendQueue selected, else to be sent now.
func (c *restoredConn) shutdownRepair(q int) error {
	if err := unix.SetsockoptInt(c.s, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, q); err != nil {
		return c.errorf("select queue %d to queue its FIN: %w", q, err)
	}
	defer unix.SetsockoptInt(c.s, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, tcpNoQueue)
	if err := unix.Shutdown(c.s, unix.SHUT_WR); err != nil {
		return c.errorf("queue its FIN (shutdown in repair mode): %w", err)
	}
	return nil
}

// peerSegment sends the connection a segment from its peer with flags:
// the peer's FIN (at the end of the receive queue, acknowledging what
// the connection had sent before its own FIN) or the peer's
// acknowledgement of the connection's FIN; then waits for state want.
func (c *restoredConn) peerSegment(flags byte, want uint32) error {
	e := c.st.Entry
	seq, ack := e.GetInqSeq(), e.GetOutqSeq()
	if flags&tcpFlagFIN != 0 {
		seq--
		ack = e.GetOutqSeq() - finOut(c.k.e.GetState()) - e.GetOutqLen()
	}
	win := min(e.GetSndWnd()>>e.GetSndWscale(), 0xffff)
	if err := sendSegment(c.s, c.k.src, c.k.dst, seq, ack, flags, uint16(win)); err != nil {
		return c.errorf("%w", err)
	}
	if err := waitState(c.s, want); err != nil {
		return c.errorf("a segment of its peer's (flags %#x), sent again, left it %w", flags, err)
	}
	return nil
}

// finReceived reports whether a connection in state had received its
// peer's FIN, which its receive sequence counts.
func finReceived(state uint32) bool {
	return state == tcpCloseWait || state == tcpLastAck || state == tcpClosing
}

// finOut is 1 if a connection in state had queued its own FIN, which its
// send sequence counts (but not the bytes of its image), else 0.
func finOut(state uint32) uint32 {
	switch state {
	case tcpFinWait1, tcpFinWait2, tcpClosing, tcpLastAck:
		return 1
	}
	return 0
}

// repairable reports whether repair mode restores a connection in state:
// established, half-closed, or still sending its SYN (SYN_SENT).
func repairable(state uint32) bool {
	return state == tcpEstablished || state == tcpSynSent || finReceived(state) || finOut(state) == 1
}
