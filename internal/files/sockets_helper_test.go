package files

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"testing"

	tcpstream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/sockets"
)

// What the tests of sockets in a descriptor table write into the images
// and the simulated kernel models, as the kernel and criu define them
// (package sockets has its own, unexported).
const (
	// TCP states of net/tcp_states.h.
	tcpEstablished = 1
	tcpSynSent     = 2
	tcpClose       = 7
	tcpListen      = 10
	// TCP_REPAIR_QUEUE's queues.
	tcpNoQueue   = 0
	tcpRecvQueue = 1
	tcpSendQueue = 2
	// CRIU's UnixSkEntry.uflags bit of an external socket.
	uskExtern = 1
)

// addrWords is an address as an InetSkEntry keeps it: its bytes, in
// network order, read as little-endian 32-bit words.
func addrWords(a netip.Addr, family int) []uint32 {
	b := make([]byte, 4)
	if family == unix.AF_INET6 {
		b = make([]byte, 16)
	}
	if a.IsValid() {
		copy(b, a.AsSlice())
	}
	if a.IsValid() && family == unix.AF_INET6 {
		a16 := a.As16()
		copy(b, a16[:])
	}
	out := make([]uint32, len(b)/4)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return out
}

// wantSockaddr is the sockaddr_in or sockaddr_in6 of an address of the
// images (port, words as addrWords), with no scope.
func wantSockaddr(family, port uint32, words []uint32) []byte {
	b := binary.LittleEndian.AppendUint16(nil, uint16(family))
	b = binary.BigEndian.AppendUint16(b, uint16(port))
	if family == unix.AF_INET6 {
		b = append(b, 0, 0, 0, 0) // flow info
	}
	for _, w := range words {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	if family == unix.AF_INET {
		return append(b, make([]byte, 8)...)
	}
	return append(b, 0, 0, 0, 0) // scope
}

// tcpStream is a connection's tcp-stream image with queues of the given
// sizes, unsent the last bytes of its send queue, and every handshake
// option (SACK, window scaling, timestamps).
func tcpStream(in, out, unsent int) *sockets.TCPStream {
	b := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }
	return &sockets.TCPStream{
		Entry: &tcpstream.TcpStreamEntry{
			InqLen: proto.Uint32(uint32(in)), InqSeq: proto.Uint32(5000), OutqLen: proto.Uint32(uint32(out)),
			OutqSeq: proto.Uint32(100), OptMask: proto.Uint32(1 | 2 | 4),
			SndWscale: proto.Uint32(7), RcvWscale: proto.Uint32(9), MssClamp: proto.Uint32(1460),
			Timestamp: proto.Uint32(123456), UnsqLen: proto.Uint32(uint32(unsent)),
			SndWl1: proto.Uint32(1), SndWnd: proto.Uint32(2), MaxWindow: proto.Uint32(3), RcvWnd: proto.Uint32(4), RcvWup: proto.Uint32(5),
		},
		In: b(in, 'i'), Out: b(out, 'o'),
	}
}

// socketPair is a unix socketpair of type typ, closed when the test ends.
func socketPair(t *testing.T, typ int) [2]int {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds
}

// fdCount counts this process's open descriptors.
func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
