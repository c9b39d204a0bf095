package sockets

import (
	"bytes"
	"net/netip"
	"testing"

	tcpstream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"google.golang.org/protobuf/proto"
)

// TestAckPeerReceived checks how the send queue of a dumped connection
// agrees with the receive queue of its peer: bytes the peer received are
// taken off the front, sent ones first, and the send window keeps its
// right edge; a peer that received nothing more changes nothing. The
// first case is a dump seen under load: the connection in FIN_WAIT1 had
// all its 74240 bytes unsent, its peer had received the first 28672 (a
// window probe sent after the connection was read).
func TestAckPeerReceived(t *testing.T) {
	out := make([]byte, 74240)
	for i := range out {
		out[i] = byte(i * 7)
	}
	for _, tc := range []struct {
		name                  string
		state, pState         uint32
		outqSeq, unsq, sndWnd uint32
		inqSeq                uint32 // the peer's
		wantLen, wantUnsq     uint32
		wantWnd               uint32
	}{
		{"probe after the read", tcpFinWait1, tcpEstablished, 2826056410, 74240, 28672, 2826010841, 45568, 45568, 0},
		{"agree", tcpFinWait1, tcpEstablished, 2826056410, 74240, 28672, 2825982169, 74240, 74240, 28672},
		{"peer behind", tcpEstablished, tcpEstablished, 1000 + 74240, 0, 65536, 900, 74240, 0, 65536},
		{"sent ones first", tcpEstablished, tcpEstablished, 1000 + 74240, 70000, 65536, 1000 + 10000, 64240, 64240, 55536},
		{"sent ones only", tcpEstablished, tcpEstablished, 1000 + 74240, 70000, 65536, 1000 + 2000, 72240, 70000, 63536},
		{"all and the FIN", tcpFinWait1, tcpCloseWait, 1000 + 74240 + 1, 74240, 65536, 1000 + 74240 + 1, 0, 0, 0},
		{"peer past the end", tcpEstablished, tcpEstablished, 1000 + 74240, 0, 65536, 1000 + 74241, 74240, 0, 65536},
		{"sequence wraps", tcpEstablished, tcpEstablished, 74240 - 1000, 74240, 4096, 1000, 72240, 72240, 2096},
	} {
		s := &TCPStream{Entry: &tcpstream.TcpStreamEntry{OutqLen: proto.Uint32(74240), OutqSeq: proto.Uint32(tc.outqSeq),
			UnsqLen: proto.Uint32(tc.unsq), SndWnd: proto.Uint32(tc.sndWnd)}, Out: out}
		p := &TCPStream{Entry: &tcpstream.TcpStreamEntry{InqSeq: proto.Uint32(tc.inqSeq)}}
		ackPeerReceived(s, tc.state, p, tc.pState)
		e := s.Entry
		if e.GetOutqLen() != tc.wantLen || e.GetUnsqLen() != tc.wantUnsq || e.GetSndWnd() != tc.wantWnd ||
			!bytes.Equal(s.Out, out[74240-tc.wantLen:]) || e.GetOutqSeq() != tc.outqSeq {
			t.Errorf("%s: send queue %d bytes (%d unsent, %d kept), window %d, end %d; want %d (%d unsent), window %d, end %d",
				tc.name, e.GetOutqLen(), e.GetUnsqLen(), len(s.Out), e.GetSndWnd(), e.GetOutqSeq(), tc.wantLen, tc.wantUnsq, tc.wantWnd, tc.outqSeq)
		}
	}
}

// TestAckPeersReceived checks that connections pair up by their
// addresses in one network namespace, a v4-mapped one with a plain IPv4
// one too, and that a connection whose peer is not in the images (the
// same addresses in another namespace are not its peer's) is left alone.
func TestAckPeersReceived(t *testing.T) {
	mk := func(outqSeq, outq, inqSeq uint32) *TCPStream {
		return &TCPStream{Entry: &tcpstream.TcpStreamEntry{OutqLen: proto.Uint32(outq), OutqSeq: proto.Uint32(outqSeq),
			UnsqLen: proto.Uint32(outq), InqSeq: proto.Uint32(inqSeq)}, Out: make([]byte, outq)}
	}
	a, b, lone, other := mk(200, 100, 5000), mk(5000, 0, 150), mk(200, 100, 5000), mk(5000, 0, 190)
	ap := netip.MustParseAddrPort
	ackPeersReceived([]tcpEnd{
		{st: a, state: tcpEstablished, src: ap("[::ffff:127.0.0.1]:1000"), dst: ap("[::ffff:127.0.0.1]:2000")},
		{st: b, state: tcpEstablished, src: ap("127.0.0.1:2000"), dst: ap("127.0.0.1:1000")},
		{st: lone, state: tcpEstablished, src: ap("127.0.0.1:1000"), dst: ap("127.0.0.1:2000"), ns: 2},
		{st: other, state: tcpEstablished, src: ap("127.0.0.1:3000"), dst: ap("127.0.0.1:1000"), ns: 2},
	})
	if a.Entry.GetOutqLen() != 50 || len(a.Out) != 50 || b.Entry.GetOutqLen() != 0 || lone.Entry.GetOutqLen() != 100 {
		t.Fatalf("send queues %d, %d, %d bytes; want 50, 0, 100", a.Entry.GetOutqLen(), b.Entry.GetOutqLen(), lone.Entry.GetOutqLen())
	}
}
