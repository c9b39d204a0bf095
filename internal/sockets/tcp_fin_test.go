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
