package sockets

import (
	"errors"
	"fmt"
	"unsafe"

	skpacket "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-packet"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
)

// This file is CRIU's sk-queue.c: the messages waiting in a socket's
// receive queue. The dump reads them without taking them (MSG_PEEK, with
// SO_PEEK_OFF to walk past the first one), in amber, on its copy of the
// socket; sk-queues.img holds one SkPacketEntry per message, followed by
// its bytes; restore sends them again, in order, from the socket's peer.
//
// Descriptors in flight (SCM_RIGHTS): peeking a message installs copies
// of the files it carries in amber, which dumps them as it dumps a task's
// descriptors (dumpInFlight), into files.img; the message's entry names
// them by file id (ScmEntry), as CRIU's does. Restore gets a descriptor of
// each in the task that refills the queue (made there, or taken from the
// task holding it) and sends it again with the message (refill).

// skPacket is one message queued on a socket.
type skPacket struct {
	IDFor uint32 // file id of the socket whose receive queue holds it
	Data  []byte
	// Scm are the file ids of the descriptors it carries (SCM_RIGHTS),
	// in order.
	Scm []uint32
}

// skQueuesName is the image of every socket's queued messages.
const skQueuesName = "sk-queues.img"

// errEmptyMessage marks an empty message queued on a socket shut down
// for reading, with more behind it.
var errEmptyMessage = errors.New("an empty message is queued on a socket shut down for reading: amber cannot peek past it")

// peeked is one message peeked from a queue, with amber's copies of the
// descriptors it carries, which the caller owns.
type peeked struct {
	data []byte
	fds  []int
}

// closePeeked closes amber's copies of the descriptors msgs carry.
func closePeeked(msgs []peeked) {
	for _, m := range msgs {
		for _, fd := range m.fds {
			unix.Close(fd)
		}
	}
}

// peekQueue returns the messages queued on socket s, oldest first, and
// leaves the queue and the socket's peek offset as they were. A stream
// socket's bytes come in chunks, whose boundaries mean nothing but where
// descriptors ride. shutRD tells that s is shut down for reading: an
// empty read is then the end of the queue, not an empty message (which
// the peek offset steps past).
func peekQueue(s, typ int, shutRD bool) (msgs []peeked, err error) {
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
		if err != nil {
			closePeeked(msgs)
			msgs = nil
		}
	}()
	buf := make([]byte, 64<<10)
	off := 0 // bytes of the queue peeked so far: the peek offset
	for {
		n, fds, err := peekOne(s, typ, buf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return msgs, nil
		case err != nil:
			return msgs, err
		case n == 0 && len(fds) == 0 && (typ == unix.SOCK_STREAM || shutRD):
			// End of file: the socket is shut down for reading (by
			// itself or its peer), and from here on every read is
			// empty, so an empty message cannot be told from the end.
			return msgs, endOfQueue(s, typ, off)
		case n > len(buf):
			// A datagram longer than buf: peek it again, whole.
			closePeeked([]peeked{{fds: fds}})
			buf = make([]byte, n)
			if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PEEK_OFF, off); err != nil {
				return msgs, fmt.Errorf("set SO_PEEK_OFF: %w", err)
			}
			continue
		}
		msgs = append(msgs, peeked{data: append([]byte(nil), buf[:n]...), fds: fds})
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

// maxScmFds bounds the descriptors one message carries (the kernel's
// SCM_MAX_FD is 253).
const maxScmFds = 253

// peekOne peeks the next message into buf and returns its length (for a
// datagram, with MSG_TRUNC, the whole length even if buf was too short)
// and amber's copies of the descriptors it carries.
func peekOne(s, typ int, buf []byte) (int, []int, error) {
	flags := unix.MSG_PEEK | unix.MSG_DONTWAIT | unix.MSG_CMSG_CLOEXEC
	if typ != unix.SOCK_STREAM {
		flags |= unix.MSG_TRUNC
	}
	oob := make([]byte, unix.CmsgSpace(4*maxScmFds)+unix.CmsgSpace(int(unsafe.Sizeof(unix.Ucred{}))))
	for {
		n, oobn, rflags, _, err := unix.Recvmsg(s, buf, oob, flags)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, nil, err
		}
		fds, err := rightsOf(oob[:oobn])
		if err == nil && rflags&unix.MSG_CTRUNC != 0 {
			err = fmt.Errorf("control data truncated (MSG_CTRUNC)")
		}
		if err != nil {
			closePeeked([]peeked{{fds: fds}})
			return 0, nil, err
		}
		return n, fds, nil
	}
}

// rightsOf returns the descriptors a message's control data installed in
// amber (SCM_RIGHTS). Credentials (SO_PASSCRED) are not kept: the
// restored message carries those of the restored sender.
func rightsOf(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return fds, fmt.Errorf("SCM_RIGHTS: %w", err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// writeSkQueues writes sk-queues.img if some socket has queued messages.
func writeSkQueues(dir image.Dir, packets []skPacket) error {
	if len(packets) == 0 {
		return nil
	}
	w, err := image.Create(dir.File(skQueuesName), image.SkQueues)
	if err != nil {
		return err
	}
	for _, p := range packets {
		e := &skpacket.SkPacketEntry{IdFor: proto.Uint32(p.IDFor), Length: proto.Uint32(uint32(len(p.Data)))}
		if len(p.Scm) > 0 {
			e.Scm = []*skpacket.ScmEntry{{Type: proto.Uint32(unix.SCM_RIGHTS), Rights: p.Scm}}
		}
		if err := w.WriteWithPayload(e, p.Data); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

// ReadSkQueues reads sk-queues.img, if there is one: the messages of each
// socket by file id, in order, and the file ids of the descriptors each
// carries (scm: by socket file id, one slice per message, nil for one
// without; no entry for a socket none of whose messages has any).
func ReadSkQueues(dir image.Dir) (queues map[uint32][][]byte, scm map[uint32][][]uint32, err error) {
	queues, scm = map[uint32][][]byte{}, map[uint32][][]uint32{}
	err = image.EachEntry(dir.File(skQueuesName), image.SkQueues, func(r *image.Reader) error {
		var e skpacket.SkPacketEntry
		data, err := r.NextWithPayload(&e, func() int { return int(e.GetLength()) })
		if err != nil {
			return err
		}
		id := e.GetIdFor()
		rights, err := scmRights(&e)
		if err != nil {
			return fmt.Errorf("socket id %d, message %d: %w", id, len(queues[id]), err)
		}
		if len(rights) > 0 {
			scm[id] = append(scm[id], make([][]uint32, len(queues[id])-len(scm[id]))...)
			scm[id] = append(scm[id], rights)
		}
		queues[id] = append(queues[id], data)
		return nil
	})
	return queues, scm, err
}

// scmRights returns the file ids a message carries. SCM_RIGHTS is the
// only kind of control data an image holds.
func scmRights(e *skpacket.SkPacketEntry) ([]uint32, error) {
	var out []uint32
	for _, c := range e.GetScm() {
		if c.GetType() != unix.SCM_RIGHTS {
			return nil, fmt.Errorf("control data of type %d: only SCM_RIGHTS is supported", c.GetType())
		}
		out = append(out, c.GetRights()...)
	}
	if len(out) > maxScmFds {
		return nil, fmt.Errorf("%d descriptors in one message: more than the kernel's %d", len(out), maxScmFds)
	}
	return out, nil
}
