package files

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Half-closed connections, as CRIU's libsoccr restores them.
//
// A connection in CLOSE_WAIT has received its peer's FIN: the FIN counts
// in the receive sequence (rcv_nxt is one past it) but not in the
// receive queue's bytes. Repair mode makes only ESTABLISHED connections,
// so the restore makes it established one sequence number short, its
// receive window one wider (the FIN takes one), and, once every task of
// the tree is in place, hands it the peer's FIN again: a segment made by
// amber, from the peer's address, that the kernel takes as it took the
// first, moving the connection to CLOSE_WAIT. The kernel acknowledges
// it, as it did the first time: a peer that still exists takes the
// acknowledgement as a duplicate; one gone for good answers it with a
// reset, as it would have answered the task's next segment.

// finWait bounds the wait for a FIN made by amber to reach its socket.
const finWait = time.Second

// finTCPHeader is a 20-byte TCP header of a segment from src to dst that
// carries a FIN (and the ACK of ack), with its checksum.
func finTCPHeader(src, dst netip.AddrPort, seq, ack uint32, window uint16) []byte {
	be := binary.BigEndian
	h := be.AppendUint16(nil, src.Port())
	h = be.AppendUint16(h, dst.Port())
	h = be.AppendUint32(h, seq)
	h = be.AppendUint32(h, ack)
	h = append(h, 5<<4, 0x11) // data offset 5 words; FIN|ACK
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

// finPacket is the IP packet, header included, carrying a FIN from src
// to dst: IPv4 if both are (or map) IPv4 addresses, else IPv6.
func finPacket(src, dst netip.AddrPort, seq, ack uint32, window uint16) (pkt []byte, v4 bool) {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	tcp := finTCPHeader(src, dst, seq, ack, window)
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

// sendFIN sends, from dst to src, a FIN with sequence number seq
// acknowledging ack, through a raw socket of amber's (which shares the
// network namespace of the restored tasks).
func sendFIN(src, dst netip.AddrPort, seq, ack uint32, window uint16) error {
	pkt, v4 := finPacket(dst, src, seq, ack, window)
	family, level, opt := unix.AF_INET, unix.IPPROTO_IP, unix.IP_HDRINCL
	if !v4 {
		family, level, opt = unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_HDRINCL
	}
	s, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return fmt.Errorf("raw socket to send its peer's FIN: %w", err)
	}
	defer unix.Close(s)
	if err := unix.SetsockoptInt(s, level, opt, 1); err != nil {
		return fmt.Errorf("raw socket to send its peer's FIN: header included: %w", err)
	}
	var to unix.Sockaddr
	if a := src.Addr().Unmap(); v4 {
		to = &unix.SockaddrInet4{Addr: a.As4()}
	} else {
		to = &unix.SockaddrInet6{Addr: a.As16()}
	}
	if err := unix.Sendto(s, pkt, 0, to); err != nil {
		return fmt.Errorf("send its peer's FIN: %w", err)
	}
	return nil
}

// receiveFIN hands a restored connection in repair mode, established
// one sequence number short of its receive queue's end, its peer's FIN
// again, and waits for it to reach CLOSE_WAIT.
func (c *restoredConn) receiveFIN() error {
	e := c.st.Entry
	win := e.GetSndWnd() >> e.GetSndWscale()
	if win > 0xffff {
		win = 0xffff
	}
	if err := sendFIN(c.k.src, c.k.dst, e.GetInqSeq()-1, e.GetOutqSeq()-e.GetOutqLen(), uint16(win)); err != nil {
		return c.errorf("%w", err)
	}
	deadline := time.Now().Add(finWait)
	for {
		ti, err := readTCPInfo(c.s)
		if err != nil {
			return c.errorf("%w", err)
		}
		if ti.state == tcpCloseWait {
			return nil
		}
		if time.Now().After(deadline) {
			return c.errorf("its peer's FIN, sent again, left it in state %s, not CLOSE_WAIT", tcpStateName(uint32(ti.state)))
		}
		time.Sleep(time.Millisecond)
	}
}

// finReceived reports whether a connection in state had received its
// peer's FIN, which its receive sequence counts.
func finReceived(state uint32) bool { return state == tcpCloseWait }
