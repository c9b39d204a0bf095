package ipc

// POSIX message queues of an IPC namespace. CRIU's format has no image
// for them (CRIU drops them); amber keeps them in amber-mqueue-NSID.txt
// (mqueue_image.go).
//
// Dump lists the queues through a mount of the namespace's own mqueue
// filesystem that is never attached anywhere (fsopen, fsmount), which
// also gives each queue's owner and mode. The kernel has no way to read
// a message and leave it queued, so each queue is emptied and at once
// refilled in the order the messages came out: the order a receiver
// would have taken them in. The tree is frozen meanwhile, and a task
// frozen inside mq_timedsend or mq_timedreceive has left the queue's
// wait list, so no message is handed past amber.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"amber/internal/image"
)

// mqAttr is struct mq_attr.
type mqAttr struct {
	Flags, Maxmsg, Msgsize, Curmsgs int64
	_                               [4]int64
}

// mqueue is one POSIX message queue, named without the leading slash.
type mqueue struct {
	name            string
	uid, gid, mode  uint32
	maxmsg, msgsize int64
	msgs            []mqMessage
}

// mqMessage is one message with its priority.
type mqMessage struct {
	prio uint32
	data []byte
}

// dumpMqueues writes amber-mqueue-NSID.txt with the message queues of
// the calling thread's IPC namespace; nothing when it has none.
func dumpMqueues(dir image.Dir, nsID uint32) error {
	queues, err := readMqueues()
	if err != nil {
		return err
	}
	if len(queues) == 0 {
		return nil
	}
	return dir.MqueuePath(nsID).WriteFile(encodeMqueues(queues))
}

// readMqueues reads every queue of the calling thread's IPC namespace.
func readMqueues() ([]mqueue, error) {
	root, err := mountMqueue()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	names, err := root.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list the POSIX message queues: %w", err)
	}
	slices.Sort(names)
	queues := make([]mqueue, 0, len(names))
	for _, name := range names {
		q, err := readMqueue(int(root.Fd()), name)
		if err != nil {
			return nil, fmt.Errorf("POSIX message queue /%s: %w", name, err)
		}
		queues = append(queues, q)
	}
	return queues, nil
}

// mountMqueue opens the root of the calling thread's IPC namespace's
// mqueue filesystem, mounted nowhere.
func mountMqueue() (*os.File, error) {
	fs, err := unix.Fsopen("mqueue", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fsopen mqueue: %w", err)
	}
	defer unix.Close(fs)
	if err := unix.FsconfigCreate(fs); err != nil {
		return nil, fmt.Errorf("fsconfig mqueue: %w", err)
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fsmount mqueue: %w", err)
	}
	defer unix.Close(mnt)
	// The mount's descriptor is a path only: open its root to read it.
	root, err := unix.Openat(mnt, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the mqueue root: %w", err)
	}
	return os.NewFile(uintptr(root), "mqueue"), nil
}

// readMqueue reads queue name: owner and mode from its file under root,
// limits and messages through a descriptor of the queue.
func readMqueue(root int, name string) (mqueue, error) {
	q := mqueue{name: name}
	fd, err := unix.Openat(root, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return q, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return q, err
	}
	q.uid, q.gid, q.mode = st.Uid, st.Gid, st.Mode&0o7777
	info, err := io.ReadAll(f)
	if err != nil {
		return q, err
	}
	if pid := notifyPid(string(info)); pid != 0 {
		return q, fmt.Errorf("pid %d waits for its notification (mq_notify), which amber cannot restore", pid)
	}
	mqd, err := mqOpen(name, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0, nil)
	if err != nil {
		return q, fmt.Errorf("mq_open: %w", err)
	}
	defer unix.Close(mqd)
	var attr mqAttr
	if err := mqGetattr(mqd, &attr); err != nil {
		return q, fmt.Errorf("mq_getsetattr: %w", err)
	}
	q.maxmsg, q.msgsize = attr.Maxmsg, attr.Msgsize
	q.msgs, err = takeMessages(mqd, attr.Msgsize)
	if putErr := putBack(mqd, q.msgs); putErr != nil {
		return q, putErr
	}
	return q, err
}

// notifyPid is the NOTIFY_PID of a queue's file: the process registered
// for its notification, 0 for none.
func notifyPid(info string) int {
	_, after, ok := strings.Cut(info, "NOTIFY_PID:")
	if !ok {
		return 0
	}
	pid, _ := strconv.Atoi(strings.Fields(after + " ")[0])
	return pid
}

// takeMessages receives every message of queue mqd, whose messages are
// at most msgsize bytes.
func takeMessages(mqd int, msgsize int64) ([]mqMessage, error) {
	buf := make([]byte, max(msgsize, 1))
	var msgs []mqMessage
	for {
		var prio uint32
		r, _, errno := unix.Syscall6(unix.SYS_MQ_TIMEDRECEIVE, uintptr(mqd), uintptr(unsafe.Pointer(&buf[0])),
			uintptr(len(buf)), uintptr(unsafe.Pointer(&prio)), 0, 0)
		if errno == unix.EAGAIN {
			return msgs, nil
		}
		if errno != 0 {
			return msgs, fmt.Errorf("mq_timedreceive message %d: %w", len(msgs), errno)
		}
		msgs = append(msgs, mqMessage{prio: prio, data: slices.Clone(buf[:r])})
	}
}

// putBack sends msgs to queue mqd again, in order.
func putBack(mqd int, msgs []mqMessage) error {
	for i, m := range msgs {
		if err := mqSend(mqd, m); err != nil {
			return fmt.Errorf("put message %d of %d back (those after it are lost): %w", i, len(msgs), err)
		}
	}
	return nil
}

// restoreMqueues makes the message queues of amber-mqueue-NSID.txt again
// in the calling thread's IPC namespace, a new one, with their messages;
// none if the dump wrote no such file (no queue, or CRIU's images).
func restoreMqueues(dir image.Dir, nsID uint32) error {
	path := dir.MqueuePath(nsID)
	f, err := path.Open()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	queues, err := decodeMqueues(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := raiseMqueueLimits(queues); err != nil {
		return err
	}
	for _, q := range queues {
		if err := makeMqueue(q); err != nil {
			return fmt.Errorf("%s: POSIX message queue /%s: %w", path, q.name, err)
		}
	}
	return nil
}

// raiseMqueueLimits lets the namespace hold the queues: a queue larger
// than fs.mqueue.msg_max or msgsize_max, or more queues than
// queues_max, need settings that CAP_SYS_RESOURCE would bypass. The
// namespace's own values are written once every object is made.
func raiseMqueueLimits(queues []mqueue) error {
	var maxmsg, msgsize int64
	for _, q := range queues {
		maxmsg, msgsize = max(maxmsg, q.maxmsg), max(msgsize, q.msgsize)
	}
	for _, s := range []struct {
		name string
		n    uint64
	}{
		{"fs/mqueue/queues_max", uint64(len(queues))},
		{"fs/mqueue/msg_max", uint64(maxmsg)},
		{"fs/mqueue/msgsize_max", uint64(msgsize)},
	} {
		if err := raiseSysctl(s.name, s.n); err != nil {
			return err
		}
	}
	return nil
}

// makeMqueue makes queue q with its limits, owner and mode, and sends it
// its messages.
func makeMqueue(q mqueue) error {
	attr := mqAttr{Maxmsg: q.maxmsg, Msgsize: q.msgsize}
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NONBLOCK | unix.O_CLOEXEC
	mqd, err := mqOpen(q.name, flags, q.mode, &attr)
	if err == unix.EMFILE {
		// amber's RLIMIT_MSGQUEUE, which the queue's bytes count to.
		if err = raiseMsgqueueLimit(); err == nil {
			mqd, err = mqOpen(q.name, flags, q.mode, &attr)
		}
	}
	if err != nil {
		return fmt.Errorf("mq_open with at most %d messages of %d bytes: %w", q.maxmsg, q.msgsize, err)
	}
	defer unix.Close(mqd)
	// The mode as dumped, not under amber's umask.
	if err := unix.Fchmod(mqd, q.mode); err != nil {
		return fmt.Errorf("fchmod %#o: %w", q.mode, err)
	}
	if err := unix.Fchown(mqd, int(q.uid), int(q.gid)); err != nil {
		return fmt.Errorf("fchown %d:%d: %w", q.uid, q.gid, err)
	}
	for i, m := range q.msgs {
		if err := mqSend(mqd, m); err != nil {
			return fmt.Errorf("send message %d (%d bytes, priority %d): %w", i, len(m.data), m.prio, err)
		}
	}
	return nil
}

// raiseMsgqueueLimit raises amber's soft RLIMIT_MSGQUEUE to its hard one.
func raiseMsgqueueLimit() error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MSGQUEUE, &lim); err != nil {
		return err
	}
	if lim.Cur == lim.Max {
		return fmt.Errorf("%w: RLIMIT_MSGQUEUE (%d bytes) is used up", unix.EMFILE, lim.Max)
	}
	lim.Cur = lim.Max
	return unix.Setrlimit(unix.RLIMIT_MSGQUEUE, &lim)
}

func mqOpen(name string, flags int, mode uint32, attr *mqAttr) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return -1, err
	}
	r, _, errno := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(p)), uintptr(flags), uintptr(mode),
		uintptr(unsafe.Pointer(attr)), 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

func mqGetattr(mqd int, attr *mqAttr) error {
	_, _, errno := unix.Syscall(unix.SYS_MQ_GETSETATTR, uintptr(mqd), 0, uintptr(unsafe.Pointer(attr)))
	if errno != 0 {
		return errno
	}
	return nil
}

func mqSend(mqd int, m mqMessage) error {
	var one byte
	p := unsafe.Pointer(&one)
	if len(m.data) > 0 {
		p = unsafe.Pointer(&m.data[0])
	}
	_, _, errno := unix.Syscall6(unix.SYS_MQ_TIMEDSEND, uintptr(mqd), uintptr(p), uintptr(len(m.data)), uintptr(m.prio), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
