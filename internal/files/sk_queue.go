package files

import (
	"errors"
	"fmt"

	skpacket "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-packet"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
)

// This file is CRIU's sk-queue.c: the messages waiting in a socket's
// receive queue. The dump reads them without taking them (MSG_PEEK, with
// SO_PEEK_OFF to walk past the first one); sk-queues.img holds one
// SkPacketEntry per message, followed by its bytes; restore sends them
// again, in order, from the socket's peer.

// SkPacket is one message queued on a socket.
type SkPacket struct {
	IDFor uint32 // file id of the socket whose receive queue holds it
	Data  []byte
}

// skQueuesName is the image of every socket's queued messages.
const skQueuesName = "sk-queues.img"

// errFdsInFlight marks a queue holding descriptors (SCM_RIGHTS).
var errFdsInFlight = errors.New("descriptors in flight (SCM_RIGHTS) are not supported yet")

// errEmptyMessage marks an empty message queued on a socket shut down
// for reading, with more behind it.
var errEmptyMessage = errors.New("an empty message is queued on a socket shut down for reading: amber cannot peek past it")

// peekQueue returns the messages queued on socket s, oldest first, and
// leaves the queue and the socket's peek offset as they were. A stream
// socket's bytes come in chunks, whose boundaries mean nothing. shutRD
// tells that s is shut down for reading: an empty read is then the end
// of the queue, not an empty message (which the peek offset steps past).
func peekQueue(s, typ int, shutRD bool) (msgs [][]byte, err error) {
	old, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PEEK_OFF)
	if err != nil {
		return nil, fmt.Errorf("get SO_PEEK_OFF: %w", err)
	}
	if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0); err != nil {
		return nil, fmt.Errorf("set SO_PEEK_OFF: %w", err)
	}
	defer func() {
		if rerr := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PEEK_OFF, old); rerr != nil && err == nil {
			err = fmt.Errorf("reset SO_PEEK_OFF to %d: %w", old, rerr)
		}
	}()
	buf := make([]byte, 64<<10)
	off := 0 // bytes of the queue peeked so far: the peek offset
	for {
		n, err := peekOne(s, typ, buf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return msgs, nil
		case err != nil:
			return nil, err
		case n == 0 && (typ == unix.SOCK_STREAM || shutRD):
			// End of file: the socket is shut down for reading (by
			// itself or its peer), and from here on every read is
			// empty, so an empty message cannot be told from the end.
			return msgs, endOfQueue(s, typ, off)
		case n > len(buf):
			// A datagram longer than buf: peek it again, whole.
			buf = make([]byte, n)
			if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PEEK_OFF, off); err != nil {
				return nil, fmt.Errorf("set SO_PEEK_OFF: %w", err)
			}
			continue
		}
		msgs = append(msgs, append([]byte(nil), buf[:n]...))
		off += n
	}
}

// endOfQueue checks, at an empty read of a socket shut down for reading,
// that the bytes peeked (off) are all the queue holds, as far as the
// kernel tells (SIOCINQ: every byte of a seqpacket or stream socket, the
// first datagram's of a datagram socket). Empty messages at the very
// end are dropped, as CRIU drops them.
func endOfQueue(s, typ, off int) error {
	if typ == unix.SOCK_DGRAM {
		return nil
	}
	queued, err := unix.IoctlGetInt(s, unix.SIOCINQ)
	if err != nil {
		return fmt.Errorf("SIOCINQ: %w", err)
	}
	if queued > off {
		return fmt.Errorf("%d of %d bytes peeked: %w", off, queued, errEmptyMessage)
	}
	return nil
}

// peekOne peeks the next message into buf and returns its length; for a
// datagram (MSG_TRUNC) the whole length even if buf was too short.
func peekOne(s, typ int, buf []byte) (int, error) {
	flags := unix.MSG_PEEK | unix.MSG_DONTWAIT | unix.MSG_CMSG_CLOEXEC
	if typ != unix.SOCK_STREAM {
		flags |= unix.MSG_TRUNC
	}
	oob := make([]byte, 4096)
	for {
		n, oobn, _, _, err := unix.Recvmsg(s, buf, oob, flags)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, err
		}
		return n, checkControl(oob[:oobn])
	}
}

// checkControl refuses a message that carries descriptors. Peeking one
// installed copies of them in amber: they are closed. Credentials
// (SO_PASSCRED) are not kept: the restored message carries those of the
// restored sender.
func checkControl(oob []byte) error {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return fmt.Errorf("control message: %w", err)
	}
	var found error
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		fds, _ := unix.ParseUnixRights(&m)
		for _, fd := range fds {
			unix.Close(fd)
		}
		found = errFdsInFlight
	}
	return found
}

// WriteSkQueues writes sk-queues.img if some socket has queued messages.
func WriteSkQueues(dir image.Dir, packets []SkPacket) error {
	if len(packets) == 0 {
		return nil
	}
	w, err := image.Create(dir.File(skQueuesName), image.SkQueues)
	if err != nil {
		return err
	}
	for _, p := range packets {
		e := &skpacket.SkPacketEntry{IdFor: proto.Uint32(p.IDFor), Length: proto.Uint32(uint32(len(p.Data)))}
		if err := w.WriteWithPayload(e, p.Data); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

// readSkQueues reads sk-queues.img, if there is one: the messages of each
// socket by file id, in order.
func readSkQueues(dir image.Dir) (map[uint32][][]byte, error) {
	out := map[uint32][][]byte{}
	err := image.EachEntry(dir.File(skQueuesName), image.SkQueues, func(r *image.Reader) error {
		var e skpacket.SkPacketEntry
		data, err := r.NextWithPayload(&e, func() int { return int(e.GetLength()) })
		if err != nil {
			return err
		}
		if len(e.GetScm()) > 0 {
			return fmt.Errorf("socket id %d: a message with descriptors (SCM_RIGHTS): not supported yet", e.GetIdFor())
		}
		out[e.GetIdFor()] = append(out[e.GetIdFor()], data)
		return nil
	})
	return out, err
}
