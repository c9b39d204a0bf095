package sockets

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// Descriptors in flight (SCM_RIGHTS) on unix sockets. See queue.go for
// how the dump finds them.

// scmFds returns descriptors, in the task, of the files message i of s's
// queue carries: the sockets of the group being made, files the task has
// at their numbers or parked, or files made (or taken from another task)
// now and parked, for the task's own descriptors or other tasks.
func (m *unixMaker) scmFds(id uint32, i int) ([]int, error) {
	var ids []uint32
	if q := m.scm[id]; i < len(q) {
		ids = q[i]
	}
	fds := make([]int, 0, len(ids))
	for _, f := range ids {
		fd, err := m.fileFd(f)
		if err != nil {
			return nil, fmt.Errorf("queued message %d: descriptor of file id %d: %w", i, f, err)
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

// fileFd is a descriptor of file id in the task.
func (m *unixMaker) fileFd(id uint32) (int, error) {
	if s := m.p.in.Files[id].GetUsk(); s != nil {
		if fd, ok := m.fds[s.GetIno()]; ok {
			return fd, nil
		}
	}
	if fd, ok := m.p.fd.Placed(id); ok {
		return fd, nil
	}
	if fd, ok := m.p.fd.Have(id); ok {
		return fd, nil
	}
	if m.p.making[id] {
		return 0, fmt.Errorf("a loop of sockets in flight in each other's queues: not supported")
	}
	m.p.making[id] = true
	fd, err := m.p.fd.Make(id)
	delete(m.p.making, id)
	if err != nil {
		return 0, err
	}
	if fd < m.p.safe {
		// Parked below safe, a target number made later would take
		// its place.
		fd = m.p.b.MoveAbove(fd, m.p.safe)
	}
	m.p.fd.Park(id, fd)
	return fd, nil
}

// sendScm plans sending msg on fd with the descriptors fds (SCM_RIGHTS)
// to addr (0: the peer): sendmsg, with its msghdr, iovec and control
// data in the scratch area.
func (m *unixMaker) sendScm(fd int, msg []byte, fds []int, addr, addrlen uint64, what string) {
	b := m.p.b
	le := binary.LittleEndian
	iov := le.AppendUint64(le.AppendUint64(nil, b.Bytes(msg)), uint64(len(msg)))
	ctl := le.AppendUint64(nil, uint64(unix.CmsgLen(4*len(fds))))
	ctl = le.AppendUint32(le.AppendUint32(ctl, unix.SOL_SOCKET), unix.SCM_RIGHTS)
	for _, f := range fds {
		ctl = le.AppendUint32(ctl, uint32(f))
	}
	ctl = append(ctl, make([]byte, unix.CmsgSpace(4*len(fds))-len(ctl))...)
	hdr := le.AppendUint64(nil, addr)
	hdr = le.AppendUint64(hdr, addrlen) // msg_namelen and padding
	hdr = le.AppendUint64(hdr, b.Bytes(iov))
	hdr = le.AppendUint64(hdr, 1)
	hdr = le.AppendUint64(hdr, b.Bytes(ctl))
	hdr = le.AppendUint64(hdr, uint64(len(ctl)))
	hdr = le.AppendUint64(hdr, 0) // msg_flags and padding
	b.Call(fmt.Sprintf("%s with descriptors %v", what, fds), unix.SYS_SENDMSG, uint64(fd), b.Bytes(hdr),
		unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
}
