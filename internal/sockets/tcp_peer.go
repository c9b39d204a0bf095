package sockets

import (
	"net/netip"

	"google.golang.org/protobuf/proto"
)

// Both ends of a connection in the dumped tree.
//
// The dump reads one end after the other, each after its filter drops
// what arrives (tcp.go), and repair mode does not stop a connection's
// timers: an end read already can still send, a window probe or a
// retransmission, to a peer not read yet, which queues the bytes and
// acknowledges them; the filter drops the acknowledgement. The images
// then disagree: the peer's receive queue ends past where the end's send
// queue starts, past even the bytes it counts as sent. Restored so, the
// end sends those bytes again as new ones, the peer acknowledges up to
// its receive sequence, past anything the end sent, and the end discards
// that acknowledgement (RFC 793: it acknowledges bytes not sent yet);
// once its congestion window is spent it retransmits, and the peer
// acknowledges again, in vain, for ever. ackPeerReceived makes the images
// agree, as if the acknowledgement had arrived: the peer holds the bytes,
// so the end has delivered them.

// ackPeerReceived takes off the front of the send queue of connection s
// (in state sState) the bytes its peer p (in state pState) had received:
// those up to p's receive sequence, less its FIN. The right edge of s's
// send window stays where p had put it.
func ackPeerReceived(s *TCPStream, sState uint32, p *TCPStream, pState uint32) {
	e := s.Entry
	una := e.GetOutqSeq() - finOut(sState) - e.GetOutqLen()
	rcv := p.Entry.GetInqSeq()
	if finReceived(pState) {
		rcv--
	}
	// Past the end of the send queue, p cannot have received s's bytes:
	// it is no peer of s's (another namespace's, say) and changes nothing.
	d := int32(rcv - una)
	if d <= 0 || uint32(d) > e.GetOutqLen() {
		return
	}
	n := uint32(d)
	s.Out = s.Out[n:]
	e.OutqLen = proto.Uint32(e.GetOutqLen() - n)
	e.UnsqLen = proto.Uint32(min(e.GetUnsqLen(), e.GetOutqLen()))
	if e.SndWnd != nil {
		edge := una + e.GetSndWnd()
		e.SndWnd = proto.Uint32(uint32(max(int32(edge-(una+n)), 0)))
	}
}

// tcpEnd is one end of a connection of the images: its stream, state,
// network namespace and addresses.
type tcpEnd struct {
	st       *TCPStream
	state    uint32
	ns       uint32
	src, dst netip.AddrPort
}

// ackPeersReceived runs ackPeerReceived on each connection whose peer is
// in the images too, both ways.
func ackPeersReceived(ends []tcpEnd) {
	unmap := func(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }
	type key struct {
		ns       uint32
		src, dst netip.AddrPort
	}
	by := map[key]tcpEnd{}
	for _, c := range ends {
		by[key{c.ns, unmap(c.src), unmap(c.dst)}] = c
	}
	for _, c := range ends {
		if p, ok := by[key{c.ns, unmap(c.dst), unmap(c.src)}]; ok {
			ackPeerReceived(c.st, c.state, p.st, p.state)
		}
	}
}
