package ipc

// Message queues of an IPC namespace, in ipcns-msg-ID.img: an
// IpcMsgEntry each, followed by its messages in queue order, each an
// IpcMsg (type and size) and the text padded to 8 bytes, as CRIU writes
// them. Dump reads the messages without taking them off the queue
// (msgrcv with MSG_COPY).

import (
	"encoding/binary"
	"fmt"

	ipc_desc "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-desc"
	ipcmsg "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-msg"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
)

// msgTextSize is how many bytes a text of n bytes takes in the image.
func msgTextSize(n uint32) int { return (int(n) + 7) &^ 7 }

// dumpMsg writes ipcns-msg-NSID.img with every message queue of the
// calling thread's IPC namespace.
func dumpMsg(dir image.Dir, nsID uint32) error {
	queues, err := listMsg()
	if err != nil {
		return err
	}
	w, err := image.Create(dir.IpcnsMsgPath(nsID), image.IpcnsMsg)
	if err != nil {
		return err
	}
	for _, q := range queues {
		if err := dumpQueue(w, q); err != nil {
			w.Close()
			return fmt.Errorf("SysV message queue %d: %w", q.id, err)
		}
	}
	return w.Close()
}

// dumpQueue writes one queue and its messages.
func dumpQueue(w *image.Writer, q object[msqidDS]) error {
	if q.ds.Qbytes > 1<<32-1 || q.ds.Qnum > 1<<32-1 {
		return fmt.Errorf("%d bytes, %d messages: more than the image holds", q.ds.Qbytes, q.ds.Qnum)
	}
	e := &ipcmsg.IpcMsgEntry{Desc: descEntry(q.id, q.ds.Perm), Qbytes: proto.Uint32(uint32(q.ds.Qbytes)), Qnum: proto.Uint32(uint32(q.ds.Qnum))}
	if err := w.Write(e); err != nil {
		return err
	}
	// No message is longer than all the queue holds.
	buf := make([]byte, 8+msgTextSize(uint32(min(q.ds.Cbytes, 1<<32-1))))
	for i := range q.ds.Qnum {
		n, err := msgrcv(q.id, buf, int64(i), unix.IPC_NOWAIT|msgCopy)
		if err == unix.ENOSYS {
			return fmt.Errorf("read message %d: the kernel has no MSG_COPY (CONFIG_CHECKPOINT_RESTORE)", i)
		}
		if err != nil {
			return fmt.Errorf("read message %d (msgrcv MSG_COPY): %w", i, err)
		}
		m := &ipcmsg.IpcMsg{Mtype: proto.Uint64(binary.NativeEndian.Uint64(buf)), Msize: proto.Uint32(uint32(n))}
		text := buf[8 : 8+msgTextSize(uint32(n))]
		clear(text[n:])
		if err := w.WriteWithPayload(m, text); err != nil {
			return err
		}
	}
	return nil
}

// restoreMsg makes the message queues of ipcns-msg-NSID.img again in the
// calling thread's IPC namespace, a new one, with their messages.
func restoreMsg(dir image.Dir, nsID uint32) error {
	path := dir.IpcnsMsgPath(nsID)
	return image.EachEntry(path, image.IpcnsMsg, func(r *image.Reader) error {
		e := new(ipcmsg.IpcMsgEntry)
		if err := r.Next(e); err != nil {
			return err
		}
		d := e.GetDesc()
		if d == nil {
			return fmt.Errorf("%s: a queue without its description", path)
		}
		if err := makeQueue(r, e); err != nil {
			return fmt.Errorf("%s: SysV message queue %d (key %#x): %w", path, d.GetId(), d.GetKey(), err)
		}
		return nil
	})
}

// makeQueue makes one queue with its id, key, owner, mode and size, and
// sends it its messages, which r reads next.
func makeQueue(r *image.Reader, e *ipcmsg.IpcMsgEntry) error {
	d := e.GetDesc()
	if err := setNextID("msg", d.GetId()); err != nil {
		return err
	}
	id, err := msgget(int32(d.GetKey()), int(d.GetMode()&0o777)|unix.IPC_CREAT|unix.IPC_EXCL)
	if err != nil {
		return fmt.Errorf("msgget: %w", err)
	}
	if id != int(d.GetId()) {
		return fmt.Errorf("msgget gave id %d", id)
	}
	msgs, size, err := readMessages(r, e.GetQnum())
	if err != nil {
		return err
	}
	// While its messages are sent, the queue must hold them all, even
	// if its size was lowered below them; and a queue larger than
	// kernel.msgmnb, or a message longer than kernel.msgmax, needs a
	// setting that CAP_SYS_RESOURCE would bypass.
	room := max(uint64(e.GetQbytes()), size, uint64(len(msgs)))
	if err := raiseSysctl("kernel/msgmnb", room); err != nil {
		return err
	}
	if err := setQueue(id, nil, room); err != nil {
		return err
	}
	for i, m := range msgs {
		if err := raiseSysctl("kernel/msgmax", uint64(len(m)-8)); err != nil {
			return err
		}
		if err := msgsnd(id, m); err != nil {
			return fmt.Errorf("send message %d (%d bytes): %w", i, len(m)-8, err)
		}
	}
	return setQueue(id, d, uint64(e.GetQbytes()))
}

// readMessages reads qnum messages, each as msgsnd takes it (type, then
// text), and the bytes of their texts.
func readMessages(r *image.Reader, qnum uint32) (msgs [][]byte, size uint64, err error) {
	for i := range qnum {
		m := new(ipcmsg.IpcMsg)
		text, err := r.NextWithPayload(m, func() int { return msgTextSize(m.GetMsize()) })
		if err != nil {
			return nil, 0, fmt.Errorf("message %d: %w", i, err)
		}
		if m.GetMtype() == 0 || m.GetMtype() > 1<<63-1 {
			return nil, 0, fmt.Errorf("message %d: type %d is not a message's", i, m.GetMtype())
		}
		b := make([]byte, 8+m.GetMsize())
		binary.NativeEndian.PutUint64(b, m.GetMtype())
		copy(b[8:], text)
		msgs = append(msgs, b)
		size += uint64(m.GetMsize())
	}
	return msgs, size, nil
}

// setQueue sets the size of queue id, and its owner and mode when d is
// not nil.
func setQueue(id int, d *ipc_desc.IpcDescEntry, qbytes uint64) error {
	var ds msqidDS
	if _, err := msgctl(id, unix.IPC_STAT, &ds); err != nil {
		return fmt.Errorf("IPC_STAT: %w", err)
	}
	if d != nil {
		setPerm(&ds.Perm, d)
	}
	ds.Qbytes = qbytes
	if _, err := msgctl(id, unix.IPC_SET, &ds); err != nil {
		return fmt.Errorf("IPC_SET size %d: %w", qbytes, err)
	}
	return nil
}
