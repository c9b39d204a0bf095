package files

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// This file models memfds for fdSim: memfd_create, the calls that shape
// one (ftruncate, sendfile, lseek, fchown, fchmod, F_ADD_SEALS) and
// reopening one through /proc/self/fd or /proc/PID/fd, which makes a new
// open file description of the same memfd.

// simMemfd is a memfd inode.
type simMemfd struct {
	name       string
	sealable   bool
	seals      uint64
	size       uint64
	uid, gid   uint64
	mode       uint64
	writes     []string // "off+len<-image+from", in order
	sealedLast bool     // the seals came after every other change
	orig       *simFile // the description memfd_create made
}

func (m *simMemfd) String() string { return fmt.Sprintf("memfd %q", m.name) }

// memfdCall carries out c if it makes or changes a memfd, and reports
// whether it did.
func (s *fdSim) memfdCall(c plan.Call) (bool, error) {
	a := c.Args
	switch c.Nr {
	case unix.SYS_MEMFD_CREATE:
		name, err := s.str(a[0])
		if err != nil {
			return true, err
		}
		m := &simMemfd{name: name, sealable: a[1]&unix.MFD_ALLOW_SEALING != 0, mode: 0o777}
		if !m.sealable {
			m.seals = unix.F_SEAL_SEAL
		}
		m.orig = &simFile{kind: "memfd", mfd: m, flags: unix.O_RDWR}
		s.install(s.lowest(0), m.orig, a[1]&unix.MFD_CLOEXEC != 0)
		return true, nil
	case unix.SYS_OPENAT:
		return s.reopenMemfd(a)
	case unix.SYS_FTRUNCATE, unix.SYS_FCHOWN, unix.SYS_FCHMOD, unix.SYS_SENDFILE, unix.SYS_LSEEK, unix.SYS_FCNTL:
		d, ok := s.fds[int(a[0])]
		if !ok || d.f.mfd == nil {
			return false, nil
		}
		return true, s.memfdOp(c.Nr, d.f, a)
	}
	return false, nil
}

// reopenMemfd opens /proc/self/fd/N or /proc/PID/fd/N of a memfd.
func (s *fdSim) reopenMemfd(a [6]uint64) (bool, error) {
	path, err := s.str(a[1])
	if err != nil {
		return false, nil
	}
	parts := strings.Split(path, "/") // "", "proc", who, "fd", n
	if len(parts) != 5 || parts[1] != "proc" || parts[3] != "fd" {
		return false, nil
	}
	n, err := strconv.Atoi(parts[4])
	if err != nil {
		return false, nil
	}
	var f *simFile
	if parts[2] == "self" {
		if d, ok := s.fds[n]; ok {
			f = d.f
		}
	} else if pid, err := strconv.ParseUint(parts[2], 10, 64); err == nil {
		f = s.others[pid][n]
	}
	if f != nil && (f.kind == "pipe" || f.kind == "amber") {
		return false, nil // a pipe end or amber's terminal (sim_test.go)
	}
	if f == nil || f.mfd == nil {
		return true, fmt.Errorf("open %s: not a memfd: %w", path, unix.ENOENT)
	}
	s.opened[path]++
	s.install(s.lowest(0), &simFile{kind: "memfd", mfd: f.mfd, flags: a[2] &^ unix.O_CLOEXEC}, a[2]&unix.O_CLOEXEC != 0)
	return true, nil
}

func writable(f *simFile) bool { return f.flags&unix.O_ACCMODE != unix.O_RDONLY }

// memfdOp carries out one call on an open memfd f.
func (s *fdSim) memfdOp(nr uintptr, f *simFile, a [6]uint64) error {
	m := f.mfd
	change := func() { m.sealedLast = false }
	switch nr {
	case unix.SYS_FTRUNCATE:
		if !writable(f) {
			return unix.EINVAL
		}
		if (a[1] > m.size && m.seals&unix.F_SEAL_GROW != 0) || (a[1] < m.size && m.seals&unix.F_SEAL_SHRINK != 0) {
			return unix.EPERM
		}
		m.size = a[1]
		change()
	case unix.SYS_FCHOWN:
		m.uid, m.gid = a[1], a[2]
		change()
	case unix.SYS_FCHMOD:
		m.mode = a[1]
		change()
	case unix.SYS_LSEEK:
		if a[2] != unix.SEEK_SET {
			return fmt.Errorf("whence %d: only SEEK_SET is modelled", a[2])
		}
		f.pos = a[1]
	case unix.SYS_SENDFILE:
		in, ok := s.fds[int(a[1])]
		if !ok || in.f.kind != "file" || !writable(f) || m.seals&unix.F_SEAL_WRITE != 0 {
			return unix.EBADF
		}
		off, err := s.mem(a[2], 8)
		if err != nil {
			return err
		}
		from := binary.LittleEndian.Uint64(off)
		m.writes = append(m.writes, fmt.Sprintf("%#x+%#x<-%s+%#x", f.pos, a[3], in.f.path, from))
		f.pos += a[3]
		m.size = max(m.size, f.pos)
		change()
	case unix.SYS_FCNTL:
		return s.memfdFcntl(f, a)
	}
	return nil
}

func (s *fdSim) memfdFcntl(f *simFile, a [6]uint64) error {
	m := f.mfd
	switch a[1] {
	case unix.F_ADD_SEALS:
		if !writable(f) {
			return unix.EPERM
		}
		if !m.sealable || m.seals&unix.F_SEAL_SEAL != 0 {
			return unix.EPERM
		}
		m.seals |= a[2]
		m.sealedLast = true
	case unix.F_DUPFD, unix.F_SETFD, unix.F_SETFL:
		return s.fcntl(a)
	default:
		return fmt.Errorf("fcntl command %d on a memfd not modelled", a[1])
	}
	return nil
}
