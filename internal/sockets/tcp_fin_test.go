package sockets

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// TestFINPacket checks the segment amber makes to hand a restored
// connection its peer's FIN: ports, numbers, flags, and a checksum the
// receiver verifies (the sum over pseudo-header and segment, checksum
// included, is all ones), for IPv4, IPv6 and v4-mapped IPv6.
func TestFINPacket(t *testing.T) {
	for _, tc := range []struct {
		src, dst string
		v4       bool
		hdr      int
	}{
		{"127.0.0.1:8880", "127.0.0.1:39814", true, 20},
		{"[::1]:8880", "[::1]:39814", false, 40},
		{"[::ffff:127.0.0.1]:8880", "[::ffff:10.1.2.3]:39814", true, 20},
	} {
		src, dst := netip.MustParseAddrPort(tc.src), netip.MustParseAddrPort(tc.dst)
		pkt, v4 := finPacket(src, dst, 0xfffffff0, 12345, tcpFlagFIN|tcpFlagACK, 512)
		if v4 != tc.v4 || len(pkt) != tc.hdr+20 {
			t.Fatalf("%v -> %v: IPv4 %v, %d bytes; want %v, %d", src, dst, v4, len(pkt), tc.v4, tc.hdr+20)
		}
		seg := pkt[tc.hdr:]
		be := binary.BigEndian
		if be.Uint16(seg) != 8880 || be.Uint16(seg[2:]) != 39814 || be.Uint32(seg[4:]) != 0xfffffff0 ||
			be.Uint32(seg[8:]) != 12345 || seg[13] != 0x11 || be.Uint16(seg[14:]) != 512 {
			t.Fatalf("%v -> %v: segment % x", src, dst, seg)
		}
		// Summing over a segment that holds its own checksum gives zero
		// after the final complement.
		if sum := tcpChecksum(src.Addr().Unmap(), dst.Addr().Unmap(), seg); sum != 0 {
			t.Fatalf("%v -> %v: checksum does not verify (%#x)", src, dst, sum)
		}
	}
}

// TestFINSteps checks the replay of each half-closed state: from
// established, its steps lead to the dumped state (each step as the
// kernel takes it), and the quiet ones, taken while peers in the tree
// are not in their dumped states yet, send no FIN (which a peer would
// take as the end of its receive stream).
func TestFINSteps(t *testing.T) {
	// next is the state a connection goes to on a step.
	next := func(state uint32, st finStep) uint32 {
		switch {
		case st.kind != finPeer && state == tcpEstablished:
			return tcpFinWait1
		case st.kind != finPeer && state == tcpCloseWait:
			return tcpLastAck
		case st.kind == finPeer && st.flags&tcpFlagFIN != 0 && state == tcpEstablished:
			return tcpCloseWait
		case st.kind == finPeer && st.flags&tcpFlagFIN != 0 && state == tcpFinWait1:
			return tcpClosing
		case st.kind == finPeer && st.flags == tcpFlagACK && state == tcpFinWait1:
			return tcpFinWait2
		}
		t.Fatalf("step %+v in state %s", st, tcpStateName(state))
		return 0
	}
	for _, dumped := range []uint32{tcpEstablished, tcpCloseWait, tcpLastAck, tcpFinWait1, tcpFinWait2, tcpClosing} {
		quiet, loud := finSteps(dumped)
		state := uint32(tcpEstablished)
		for _, st := range quiet {
			if st.kind == finOwnSend {
				t.Errorf("%s: a quiet step sends its FIN", tcpStateName(dumped))
			}
			state = next(state, st)
			if st.kind == finPeer && st.want != state {
				t.Errorf("%s: a segment of its peer's waits for %s, the kernel goes to %s", tcpStateName(dumped), tcpStateName(st.want), tcpStateName(state))
			}
		}
		for _, st := range loud {
			state = next(state, st)
			if st.kind == finPeer && st.want != state {
				t.Errorf("%s: a segment of its peer's waits for %s, the kernel goes to %s", tcpStateName(dumped), tcpStateName(st.want), tcpStateName(state))
			}
		}
		if state != dumped {
			t.Errorf("replaying %s ends in %s", tcpStateName(dumped), tcpStateName(state))
		}
	}
}
