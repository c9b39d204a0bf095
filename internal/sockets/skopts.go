package sockets

import (
	"encoding/binary"
	"fmt"

	skopts "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-opts"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// planSkOpts plans setting the socket-level options dumpSkOpts reads
// (but SO_PASSCRED and SO_PASSSEC, which only unix sockets keep) on the
// socket at fd: the buffer sizes, SO_BUF_LOCK, SO_PRIORITY, SO_RCVLOWAT,
// SO_MARK, the timeouts and a classic BPF filter. what names the socket
// in the plan.
func planSkOpts(b *plan.Builder, fd int, o *skopts.SkOptsEntry, what string) {
	if v := o.GetSoSndbuf(); v != 0 {
		// The kernel doubles what it is given and reports the double.
		setsockoptInt(b, fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, v/2, "set the send buffer of "+what)
	}
	if v := o.GetSoRcvbuf(); v != 0 {
		setsockoptInt(b, fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, v/2, "set the receive buffer of "+what)
	}
	if o.SoBufLock != nil {
		setsockoptInt(b, fd, unix.SOL_SOCKET, unix.SO_BUF_LOCK, o.GetSoBufLock(), "set SO_BUF_LOCK of "+what)
	}
	if v := o.GetSoPriority(); v != 0 {
		setsockoptInt(b, fd, unix.SOL_SOCKET, unix.SO_PRIORITY, v, "set SO_PRIORITY of "+what)
	}
	if v := o.GetSoRcvlowat(); v > 1 {
		setsockoptInt(b, fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, v, "set SO_RCVLOWAT of "+what)
	}
	if v := o.GetSoMark(); v != 0 {
		setsockoptInt(b, fd, unix.SOL_SOCKET, unix.SO_MARK, v, "set SO_MARK of "+what)
	}
	planTimeout(b, fd, unix.SO_SNDTIMEO, o.GetSoSndTmoSec(), o.GetSoSndTmoUsec(), what)
	planTimeout(b, fd, unix.SO_RCVTIMEO, o.GetSoRcvTmoSec(), o.GetSoRcvTmoUsec(), what)
	planFilter(b, fd, o.GetSoFilter(), what)
}

// planTimeout plans setting a non-zero SO_SNDTIMEO or SO_RCVTIMEO.
func planTimeout(b *plan.Builder, fd, opt int, sec, usec uint64, what string) {
	if sec == 0 && usec == 0 {
		return
	}
	tv := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, sec), usec)
	b.Call(fmt.Sprintf("set timeout %d of %s", opt, what), unix.SYS_SETSOCKOPT, uint64(fd), unix.SOL_SOCKET, uint64(opt), b.Bytes(tv), 16)
}

// planFlags plans setting the status flags the dump kept (O_NONBLOCK)
// on the socket at fd.
func planFlags(b *plan.Builder, fd int, flags uint32, what string) {
	b.Call(fmt.Sprintf("set status flags %#x on %s", flags&unix.O_NONBLOCK, what), unix.SYS_FCNTL,
		uint64(fd), unix.F_SETFL, uint64(flags&unix.O_NONBLOCK))
}
