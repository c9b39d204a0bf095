package sockets

import (
	"errors"
	"fmt"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"
)

// Connections that ended: a TCP socket in TCP_CLOSE that had a
// connection (closed by both FINs, or reset) keeps its peer's address
// (SO_PEERNAME) and the bytes it had not read, and reads them, then
// end-of-file. The dump reads both in repair mode into its
// tcp-stream-INO.img, as CRIU's does. A socket made again has neither
// unless it connects, and connecting would reach the peer. So the
// restore binds it as a closed socket and, before the task runs,
// CloseTCP connects it in repair mode (no handshake, nothing sent),
// queues its unread bytes and hands it a reset of its peer's, made by
// amber: a reset is answered by nothing, and ends the connection
// (tcp_reset, tcp_done) with its addresses and its receive queue kept,
// shut down both ways. The error the reset leaves pending is taken back
// (SO_ERROR): the task finds the socket as it was, not reset.
//
// A connection whose own TIME_WAIT, in the namespace the restore runs
// in, still holds its addresses cannot be connected again: the socket
// is then left closed with no peer, as amber restored every closed
// socket before.

// reconnectEnded connects closed socket s, of file e, again, in repair
// mode, with the stream of its images, and resets it (see above). A
// socket with no stream (dumped with --tcp-close) is left as it is.
func reconnectEnded(s int, e *fdinfo.FileEntry, streams map[uint32]*TCPStream) error {
	ie := e.GetIsk()
	if ie == nil {
		return fmt.Errorf("file id %d: not an inet socket", e.GetId())
	}
	k, err := readInetImage(ie)
	if err != nil {
		return err
	}
	st := streams[ie.GetIno()]
	if st == nil {
		return nil
	}
	if err := reconnect(s, k, st); err != nil {
		return fmt.Errorf("%v: %w", k, err)
	}
	return nil
}

func reconnect(s int, k *inetImage, st *TCPStream) error {
	e := st.Entry
	if err := unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		return fmt.Errorf("turn repair mode on: %w", err)
	}
	// Leaving repair mode clears SO_REUSEADDR.
	reuse, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_REUSEADDR)
	if err != nil {
		return fmt.Errorf("getsockopt SO_REUSEADDR: %w", err)
	}
	for _, q := range []struct {
		q    int
		seq  uint32
		name string
	}{{tcpRecvQueue, e.GetInqSeq() - uint32(len(st.In)), "receive"}, {tcpSendQueue, e.GetOutqSeq(), "send"}} {
		if err := unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, q.q); err != nil {
			return fmt.Errorf("select the %s queue: %w", q.name, err)
		}
		if err := unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ, int(q.seq)); err != nil {
			return fmt.Errorf("set the %s sequence: %w", q.name, err)
		}
	}
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(k.dst.Port()), Addr: k.dst.Addr().As16()}
	if k.e.GetFamily() == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: int(k.dst.Port()), Addr: k.dst.Addr().Unmap().As4()}
	}
	if err := unix.Connect(s, sa); errors.Is(err, unix.EADDRNOTAVAIL) {
		// The connection's TIME_WAIT holds its addresses (see above).
		unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, tcpNoQueue)
		return leaveRepairClosed(s, reuse)
	} else if err != nil {
		return fmt.Errorf("connect again in repair mode: %w", err)
	}
	if len(st.In) > 0 {
		// The send queue is the one selected last: bytes written with
		// it selected would be taken for its own, sent and unacknowledged,
		// and the reset below, at the sequence after the unread bytes,
		// would then fall outside the window (answered by a challenge ACK).
		if err := unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, tcpRecvQueue); err != nil {
			return fmt.Errorf("select the receive queue: %w", err)
		}
		if err := queueReceived(s, st.In); err != nil {
			return err
		}
	}
	if err := unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, tcpNoQueue); err != nil {
		return fmt.Errorf("select no queue: %w", err)
	}
	if err := sendSegment(s, k.src, k.dst, e.GetInqSeq(), 0, tcpFlagRST, 0); err != nil {
		return err
	}
	if err := waitState(s, tcpClose); err != nil {
		return fmt.Errorf("its peer's reset, made by amber: %w", err)
	}
	if _, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_ERROR); err != nil {
		return fmt.Errorf("take back the error of the reset (SO_ERROR): %w", err)
	}
	return leaveRepairClosed(s, reuse)
}

// queueReceived queues data in the receive queue (selected), with room
// for it for the time of the writes: the dumped buffer size is given
// back after.
func queueReceived(s int, data []byte) error {
	restore, err := growBuffer(s, unix.SO_RCVBUF, unix.SO_RCVBUFFORCE)
	if err != nil {
		return err
	}
	for off := 0; off < len(data); {
		n, err := unix.SendmsgN(s, data[off:min(off+repairChunk, len(data))], nil, nil, unix.MSG_DONTWAIT)
		if err != nil {
			return fmt.Errorf("queue bytes %d- of its %d unread ones: %w", off, len(data), err)
		}
		off += n
	}
	return restore()
}

// leaveRepairClosed turns repair mode off on a closed socket and gives
// its SO_REUSEADDR back.
func leaveRepairClosed(s, reuse int) error {
	if err := unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF); err != nil {
		return fmt.Errorf("turn repair mode off: %w", err)
	}
	if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_REUSEADDR, reuse); err != nil {
		return fmt.Errorf("give SO_REUSEADDR back: %w", err)
	}
	return nil
}

// waitState waits, at most finWait, for socket s to be in state want.
func waitState(s int, want uint32) error {
	deadline := time.Now().Add(finWait)
	for {
		ti, err := readTCPInfo(s)
		if err != nil {
			return err
		}
		if uint32(ti.state) == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("in state %s, not %s", tcpStateName(uint32(ti.state)), tcpStateName(want))
		}
		time.Sleep(time.Millisecond)
	}
}
