package files

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// This file is a tiny model of a task's descriptor table: it runs the
// calls of a plan.Program that create, move or close descriptors the way
// the kernel does (lowest free number, dup3 replacing its target,
// pidfd_getfd and pidfd_open setting FD_CLOEXEC) and fails like the
// executor would at the first call the kernel would refuse.

// simPipe is a pipe object; both ends point to it.
type simPipe struct {
	n    int // creation order, for messages
	data []byte
}

// simFile is an open file description.
type simFile struct {
	kind   string // "file", "pipe", "pidfd" or "amber" (taken from amber)
	path   string // file: the path opened
	flags  uint64 // file: open flags; pipe: status flags (F_SETFL)
	pos    uint64 // file: offset set by lseek
	pipe   *simPipe
	end    int       // pipe: 0 read end, 1 write end
	origin int       // amber: amber's descriptor number; pidfd: the pid
	ev     *simEvent // event descriptors (sim_event_test.go)
	sk     *simSock  // socket: its socket (sim_sk_test.go)
	node   *simNode  // fifo, or a file made by the plan: its inode (sim_sk_test.go)
	mfd    *simMemfd // memfd: its inode (sim_memfd_test.go)
	in     *simInet  // inet socket (sim_inet_test.go)
	link   *simLink  // packet or netlink socket (sim_link_test.go)
}

func (f *simFile) String() string {
	switch f.kind {
	case "file":
		return fmt.Sprintf("file %s flags %#x pos %d", f.path, f.flags, f.pos)
	case "pipe":
		return fmt.Sprintf("pipe #%d end %d flags %#x", f.pipe.n, f.end, f.flags)
	case "amber":
		return fmt.Sprintf("amber's fd %d", f.origin)
	}
	if f.ev != nil {
		return f.ev.String()
	}
	return f.kind
}

type simFd struct {
	f       *simFile
	cloexec bool
}

// fdSim is the descriptor table of one simulated task.
type fdSim struct {
	prog    *plan.Program
	fds     map[int]simFd
	others  map[uint64]map[int]*simFile // tables of other processes, by pid, for pidfd_getfd
	pipes   int
	maxOpen int // most descriptors open at once
	opened  map[string]int
	world   *simWorld // names, sockets and files on disk (sim_sk_test.go)
	tty     simTty    // the controlling terminal (sim_tty_test.go)
}

// newFdSim returns a task that starts with the given descriptors (as a
// stub forked by amber, or a child of its restored parent) and whose
// parent amber has a terminal on fd 0.
func newFdSim(start map[int]*simFile) *fdSim {
	s := &fdSim{
		fds:    map[int]simFd{},
		others: map[uint64]map[int]*simFile{amberPid: {0: {kind: "amber", origin: 0}}},
		opened: map[string]int{},
	}
	for fd, f := range start {
		s.fds[fd] = simFd{f: f}
	}
	return s
}

// junk is a table of unrelated descriptors a stub might have inherited.
func junk(fds ...int) map[int]*simFile {
	out := map[int]*simFile{}
	for _, fd := range fds {
		out[fd] = &simFile{kind: "file", path: fmt.Sprintf("inherited %d", fd)}
	}
	return out
}

func (s *fdSim) lowest(min int) int {
	for fd := min; ; fd++ {
		if _, ok := s.fds[fd]; !ok {
			return fd
		}
	}
}

func (s *fdSim) install(fd int, f *simFile, cloexec bool) {
	s.fds[fd] = simFd{f, cloexec}
	s.maxOpen = max(s.maxOpen, len(s.fds))
}

// str reads a NUL-terminated string of the scratch area.
func (s *fdSim) str(addr uint64) (string, error) {
	if _, err := s.mem(addr, 1); err != nil {
		return "", err
	}
	off := addr - s.prog.Base
	i := bytes.IndexByte(s.prog.Image[off:], 0)
	if i < 0 {
		return "", fmt.Errorf("string at %#x not terminated", addr)
	}
	return string(s.prog.Image[off : off+uint64(i)]), nil
}

// mem returns n bytes of the scratch area at addr, or EFAULT.
func (s *fdSim) mem(addr, n uint64) ([]byte, error) {
	if addr < s.prog.Base || addr+n > s.prog.Base+uint64(len(s.prog.Image)) {
		return nil, fmt.Errorf("address %#x+%d outside the scratch area: %w", addr, n, unix.EFAULT)
	}
	return s.prog.Image[addr-s.prog.Base : addr-s.prog.Base+n], nil
}

func (s *fdSim) get(fd uint64) (simFd, error) {
	d, ok := s.fds[int(fd)]
	if !ok {
		return d, fmt.Errorf("fd %d: %w", int(fd), unix.EBADF)
	}
	return d, nil
}

// run carries out p's calls and returns the first error, naming the call.
func (s *fdSim) run(p *plan.Program) error { return s.runCalls(p, 0, len(p.Calls)) }

// runCalls carries out calls [from, to) of p.
func (s *fdSim) runCalls(p *plan.Program, from, to int) error {
	s.prog = p
	for i := from; i < to; i++ {
		c := p.Calls[i]
		if err := s.call(c); err != nil {
			return fmt.Errorf("call %d %s (%s): %w", i, plan.SyscallName(c.Nr), c.What, err)
		}
	}
	return nil
}

func (s *fdSim) call(c plan.Call) error {
	if handled, err := s.eventCall(c); handled {
		return err
	}
	if handled, err := s.memfdCall(c); handled {
		return err
	}
	if handled, err := s.inetCall(c); handled {
		return err
	}
	if handled, err := s.linkCall(c); handled {
		return err
	}
	if handled, err := s.worldCall(c); handled {
		return err
	}
	if handled, err := s.ttyCall(c); handled {
		return err
	}
	a := c.Args
	switch c.Nr {
	case unix.SYS_OPENAT:
		if a[0] != uint64(1<<64-100) {
			return fmt.Errorf("dirfd %#x is not AT_FDCWD", a[0])
		}
		path, err := s.str(a[1])
		if err != nil {
			return err
		}
		s.opened[path]++
		if f, ok, err := s.reopen(path, a[2]); ok || err != nil {
			if err != nil {
				return err
			}
			s.install(s.lowest(0), f, a[2]&unix.O_CLOEXEC != 0)
			return nil
		}
		s.install(s.lowest(0), &simFile{kind: "file", path: path, flags: a[2] &^ unix.O_CLOEXEC}, a[2]&unix.O_CLOEXEC != 0)
	case unix.SYS_CLOSE:
		if _, err := s.get(a[0]); err != nil {
			return err
		}
		delete(s.fds, int(a[0]))
	case unix.SYS_CLOSE_RANGE:
		if a[2] != 0 || a[0] > a[1] {
			return unix.EINVAL
		}
		for fd := range s.fds {
			if uint64(fd) >= a[0] && uint64(fd) <= a[1] {
				delete(s.fds, fd)
			}
		}
	case unix.SYS_DUP3:
		d, err := s.get(a[0])
		if err != nil {
			return err
		}
		if a[0] == a[1] || a[2]&^unix.O_CLOEXEC != 0 {
			return unix.EINVAL
		}
		s.install(int(a[1]), d.f, a[2]&unix.O_CLOEXEC != 0)
	case unix.SYS_FCNTL:
		return s.fcntl(a)
	case unix.SYS_LSEEK:
		d, err := s.get(a[0])
		if err != nil {
			return err
		}
		if d.f.kind != "file" {
			return unix.ESPIPE
		}
		if a[2] != unix.SEEK_SET {
			return fmt.Errorf("whence %d: only SEEK_SET is modelled", a[2])
		}
		d.f.pos = a[1]
	case unix.SYS_PIPE2:
		if _, err := s.mem(a[0], 8); err != nil {
			return err
		}
		s.pipes++
		p := &simPipe{n: s.pipes}
		cloexec := a[1]&unix.O_CLOEXEC != 0
		fl := a[1] & unix.O_NONBLOCK
		s.install(s.lowest(0), &simFile{kind: "pipe", pipe: p, end: 0, flags: fl}, cloexec)
		s.install(s.lowest(0), &simFile{kind: "pipe", pipe: p, end: 1, flags: fl}, cloexec)
	case unix.SYS_WRITE:
		d, err := s.get(a[0])
		if err != nil {
			return err
		}
		if d.f.kind != "pipe" || d.f.end != 1 {
			return fmt.Errorf("write to %v: %w", d.f, unix.EBADF)
		}
		buf, err := s.mem(a[1], a[2])
		if err != nil {
			return err
		}
		d.f.pipe.data = append(d.f.pipe.data, buf...)
	case unix.SYS_PIDFD_OPEN:
		if _, ok := s.others[a[0]]; !ok || a[1] != 0 {
			return fmt.Errorf("pidfd_open(%d): no such process modelled: %w", a[0], unix.ESRCH)
		}
		// pidfd_open(2): "The close-on-exec flag is set on the file
		// descriptor."
		s.install(s.lowest(0), &simFile{kind: "pidfd", origin: int(a[0])}, true)
	case unix.SYS_PIDFD_GETFD:
		d, err := s.get(a[0])
		if err != nil {
			return err
		}
		if d.f.kind != "pidfd" {
			return fmt.Errorf("fd %d is %v, not a pidfd: %w", a[0], d.f, unix.EBADF)
		}
		f, ok := s.others[uint64(d.f.origin)][int(a[1])]
		if !ok || a[2] != 0 {
			return fmt.Errorf("fd %d of pid %d: %w", a[1], d.f.origin, unix.EBADF)
		}
		// pidfd_getfd(2): "The close-on-exec flag (FD_CLOEXEC) is set
		// on the file descriptor returned".
		s.install(s.lowest(0), f, true)
	case unix.SYS_MMAP:
		if a[3]&unix.MAP_ANONYMOUS == 0 {
			if _, err := s.get(a[4]); err != nil {
				return err
			}
		}
	}
	return nil
}

// reopen models opening /proc/self/fd/N of a pipe end: a new open file
// of the same pipe, whose end is the access mode asked for (ok false: not
// such a path).
func (s *fdSim) reopen(path string, flags uint64) (*simFile, bool, error) {
	n, found := strings.CutPrefix(path, "/proc/self/fd/")
	if !found {
		return nil, false, nil
	}
	fd, err := strconv.Atoi(n)
	if err != nil {
		return nil, true, fmt.Errorf("open %s: %w", path, unix.ENOENT)
	}
	d, err := s.get(uint64(fd))
	if err != nil {
		return nil, true, fmt.Errorf("open %s: %w", path, err)
	}
	if d.f.kind != "pipe" {
		return nil, true, fmt.Errorf("open %s: reopening %v is not modelled", path, d.f)
	}
	end := 0
	if flags&unix.O_ACCMODE == unix.O_WRONLY {
		end = 1
	}
	return &simFile{kind: "pipe", pipe: d.f.pipe, end: end, flags: flags & unix.O_NONBLOCK}, true, nil
}

func (s *fdSim) fcntl(a [6]uint64) error {
	d, err := s.get(a[0])
	if err != nil {
		return err
	}
	switch a[1] {
	case unix.F_DUPFD, unix.F_DUPFD_CLOEXEC:
		s.install(s.lowest(int(a[2])), d.f, a[1] == unix.F_DUPFD_CLOEXEC)
	case unix.F_SETFD:
		d.cloexec = a[2]&unix.FD_CLOEXEC != 0
		s.fds[int(a[0])] = d
	case unix.F_SETFL:
		// Only these status flags can change (fs/fcntl.c SETFL_MASK).
		const setfl = unix.O_APPEND | unix.O_NONBLOCK | unix.O_NDELAY | unix.O_DIRECT | unix.O_NOATIME
		d.f.flags = d.f.flags&^setfl | a[2]&setfl
	default:
		return fmt.Errorf("fcntl command %d not modelled", a[1])
	}
	return nil
}

// dump lists the table, for failure messages.
func (s *fdSim) dump() string {
	var b bytes.Buffer
	for fd := 0; fd <= s.maxFd(); fd++ {
		if d, ok := s.fds[fd]; ok {
			fmt.Fprintf(&b, "  %d: %v cloexec=%v\n", fd, d.f, d.cloexec)
		}
	}
	return b.String()
}

func (s *fdSim) maxFd() int {
	m := -1
	for fd := range s.fds {
		m = max(m, fd)
	}
	return m
}
