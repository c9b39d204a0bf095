package compel

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"amber/internal/proc"
)

// putChannel is a datagram socket pair of the stub's: amber holds a
// copy of one end and sends descriptors over it (SCM_RIGHTS), the stub
// receives them at the other, with its scratch page for recvmsg's
// arguments.
type putChannel struct {
	mine    int    // amber's copy of the sending end
	theirs  int    // the stub's receiving end
	scratch uint64 // a page of the stub's
}

// Where recvmsg's arguments lie in the scratch page.
const (
	putMsghdr  = 0   // struct msghdr, 56 bytes
	putIovec   = 64  // struct iovec, 16 bytes
	putData    = 128 // the one byte sent with each descriptor
	putControl = 192 // the control message: CMSG_SPACE(4), 24 bytes
	putCmsgLen = 24
)

// Put gives the stub a copy of amber's descriptor fd and returns its
// number there. Tasks in a user namespace of their own may not take
// amber's descriptors (pidfd_getfd and /proc/AMBER/fd need rights over
// amber, a process of the parent namespace), but may the stub's, once it
// is in their namespace; and the stub, in it, may not take amber's
// either: amber sends them.
func (s *Stub) Put(fd int) (int, error) {
	if err := s.openPut(); err != nil {
		return 0, err
	}
	if err := unix.Sendmsg(s.put.mine, []byte{0}, unix.UnixRights(fd), nil, 0); err != nil {
		return 0, fmt.Errorf("restore stub: send fd %d: %w", fd, err)
	}
	c := s.put
	hdr := make([]byte, putControl+putCmsgLen)
	le := binary.LittleEndian
	le.PutUint64(hdr[putMsghdr+16:], c.scratch+putIovec) // msg_iov
	le.PutUint64(hdr[putMsghdr+24:], 1)                  // msg_iovlen
	le.PutUint64(hdr[putMsghdr+32:], c.scratch+putControl)
	le.PutUint64(hdr[putMsghdr+40:], putCmsgLen)
	le.PutUint64(hdr[putIovec:], c.scratch+putData)
	le.PutUint64(hdr[putIovec+8:], 1)
	if err := s.WriteMem(c.scratch, hdr); err != nil {
		return 0, fmt.Errorf("restore stub: %w", err)
	}
	if _, err := s.SyscallOK(s.insn, unix.SYS_RECVMSG, uint64(c.theirs), c.scratch+putMsghdr, 0); err != nil {
		return 0, fmt.Errorf("restore stub: receive fd %d: %w", fd, err)
	}
	cmsg := make([]byte, putCmsgLen)
	if err := s.ReadMem(c.scratch+putControl, cmsg); err != nil {
		return 0, fmt.Errorf("restore stub: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(cmsg)
	if err != nil || len(msgs) != 1 {
		return 0, fmt.Errorf("restore stub: receive fd %d: no descriptor came (%v)", fd, err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return 0, fmt.Errorf("restore stub: receive fd %d: no descriptor came (%v)", fd, err)
	}
	return fds[0], nil
}

// openPut makes Put's channel the first time: a scratch page and a
// socket pair in the stub, one end of which amber takes.
func (s *Stub) openPut() error {
	if s.put != nil {
		return nil
	}
	page, err := s.SyscallOK(s.insn, unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	if err != nil {
		return fmt.Errorf("restore stub: map a scratch page: %w", err)
	}
	if _, err := s.SyscallOK(s.insn, unix.SYS_SOCKETPAIR, unix.AF_UNIX, unix.SOCK_DGRAM, 0, page); err != nil {
		return fmt.Errorf("restore stub: socketpair: %w", err)
	}
	sv := make([]byte, 8)
	if err := s.ReadMem(page, sv); err != nil {
		return fmt.Errorf("restore stub: %w", err)
	}
	send, recv := int(int32(binary.LittleEndian.Uint32(sv))), int(int32(binary.LittleEndian.Uint32(sv[4:])))
	mine, err := proc.CopyFd(s.Pid, send)
	if err != nil {
		return fmt.Errorf("restore stub: take its socket: %w", err)
	}
	if _, err := s.SyscallOK(s.insn, unix.SYS_CLOSE, uint64(send)); err != nil {
		unix.Close(mine)
		return fmt.Errorf("restore stub: close: %w", err)
	}
	s.put = &putChannel{mine: mine, theirs: recv, scratch: page}
	return nil
}
