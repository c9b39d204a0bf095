package compel

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// The threads of the routine wait for amber's death on a pidfd of amber,
// not on the end of file of the control socket. amber's descriptors are
// closed in its exit (exit_files) before the kernel cuts its ptrace links
// (exit_notify, __ptrace_unlink), and only the unlink stops again a
// thread whose process is stopped for its job control (it reinstates
// JOBCTL_STOP_PENDING): a thread woken by the end of file would go back
// to its own code and run it until then. A pidfd is readable only once
// every thread of amber has gone through exit_notify, when no thread of
// the target is traced any more: a thread of a stopped process is then
// stopped before its wait ends, and runs its own code only once continued.

// watchMsg is where in the scratch's data the leader receives the pidfd:
// a struct msghdr, its iovec, the byte and the control message.
const (
	watchHdr     = 0
	watchIov     = 56
	watchByte    = 72
	watchControl = 80
	watchMsgSize = watchControl + 24 // CMSG_SPACE(sizeof(int))
)

// sendWatch sends a pidfd of amber to the process over the control
// socket, and lays out in the scratch the message header the leader
// receives it with; it returns the leader's recvmsg call on ctl, its
// end. The descriptor lands at the lowest free number.
func (p *Parasite) sendWatch(v *victim, ctl int) (Call, error) {
	self, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return Call{}, fmt.Errorf("pidfd_open of amber: %w", err)
	}
	defer unix.Close(self)
	if err := unix.Sendmsg(int(p.ctl.Fd()), []byte{0}, unix.UnixRights(self), nil, 0); err != nil {
		return Call{}, fmt.Errorf("send amber's pidfd: %w", err)
	}
	at := p.base + dataOffset
	msg := make([]byte, watchMsgSize)
	le := binary.LittleEndian
	le.PutUint64(msg[watchHdr+16:], at+watchIov) // msg_iov
	le.PutUint64(msg[watchHdr+24:], 1)           // msg_iovlen
	le.PutUint64(msg[watchHdr+32:], at+watchControl)
	le.PutUint64(msg[watchHdr+40:], watchMsgSize-watchControl)
	le.PutUint64(msg[watchIov:], at+watchByte)
	le.PutUint64(msg[watchIov+8:], 1)
	if err := v.t.WriteMem(at, msg); err != nil {
		return Call{}, err
	}
	return Call{Nr: unix.SYS_RECVMSG, Args: [6]uint64{uint64(ctl), at, unix.MSG_CMSG_CLOEXEC}}, nil
}

// receivedWatch checks that the leader received amber's pidfd as
// descriptor want, which its routine waits on and closes.
func (p *Parasite) receivedWatch(v *victim, want int) error {
	msg := make([]byte, watchMsgSize)
	if err := v.t.ReadMem(p.base+dataOffset, msg); err != nil {
		return err
	}
	le := binary.LittleEndian
	flags := le.Uint32(msg[watchHdr+48:])
	cm := msg[watchControl:]
	level, typ := int32(le.Uint32(cm[8:])), int32(le.Uint32(cm[12:]))
	got := int(int32(le.Uint32(cm[16:])))
	if flags&unix.MSG_CTRUNC != 0 || level != unix.SOL_SOCKET || typ != unix.SCM_RIGHTS || got != want {
		return fmt.Errorf("pid %d: amber's pidfd received as fd %d (flags %#x), want fd %d", v.t.Pid, got, flags, want)
	}
	return nil
}
