package files

import (
	"encoding/binary"
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// The simulator's model of what lies outside the descriptor table: unix
// sockets and their names, and the files the plan finds or makes on disk
// (socket files, FIFOs, unlinked files made again), with the kernel's
// rules for binding, connecting, sending, shutting down and closing, and
// refusing what the kernel would refuse.

// simWorld is the machine around the simulated task.
type simWorld struct {
	cwd   string
	names map[string]*simSock // bound names: absolute paths, or "@" and an abstract name
	nodes map[string]*simNode // files on disk the plan touches, by absolute path
	socks int
}

// simNode is an inode on disk.
type simNode struct {
	kind     string   // "socket", "fifo" or "file"
	pipe     *simPipe // fifo: the pipe all its opens share
	data     []byte   // file
	mode     uint32
	uid, gid uint64
	times    [4]uint64 // utimensat: atime sec, nsec, mtime sec, nsec
	linked   bool      // has a name in the directory
}

// simSock is a unix socket.
type simSock struct {
	n         int
	typ       int
	name      string // "" unbound, else as in simWorld.names
	listening bool
	backlog   int
	pending   []*simSock // listener: clients of the connections not accepted
	peer      *simSock   // connected to; a client not accepted: its listener
	queue     [][]byte
	shutdown  int // RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2
	dead      bool
	opts      map[int][]byte // setsockopt values
}

func (k *simSock) String() string {
	return fmt.Sprintf("socket #%d type %d name %q", k.n, k.typ, k.name)
}

// w returns the world, made on first use.
func (s *fdSim) w() *simWorld {
	if s.world == nil {
		s.world = &simWorld{cwd: "/", names: map[string]*simSock{}, nodes: map[string]*simNode{}}
	}
	return s.world
}

// worldCall carries out c if it concerns sockets or the files of the
// world, and reports whether it did.
func (s *fdSim) worldCall(c plan.Call) (bool, error) {
	a := c.Args
	switch c.Nr {
	case unix.SYS_SOCKET:
		return true, s.socket(a)
	case unix.SYS_SOCKETPAIR:
		return true, s.socketpair(a)
	case unix.SYS_BIND:
		return true, s.bind(a)
	case unix.SYS_LISTEN:
		return true, s.listen(a)
	case unix.SYS_CONNECT:
		return true, s.connect(a)
	case unix.SYS_SENDTO:
		return true, s.sendto(a)
	case unix.SYS_SHUTDOWN:
		return true, s.shutdownSock(a)
	case unix.SYS_SETSOCKOPT:
		return true, s.setsockopt(a)
	case unix.SYS_CHDIR, unix.SYS_FCHDIR:
		return true, s.chdir(c.Nr, a)
	case unix.SYS_UNLINKAT, unix.SYS_FCHMODAT, unix.SYS_FCHOWNAT, unix.SYS_UTIMENSAT:
		return true, s.pathCall(c.Nr, a)
	case unix.SYS_FTRUNCATE, unix.SYS_PWRITE64, unix.SYS_FCHOWN, unix.SYS_FCHMOD:
		return true, s.nodeCall(c.Nr, a)
	case unix.SYS_OPENAT:
		return s.openNode(a)
	case unix.SYS_WRITE:
		return s.writeFifo(a)
	case unix.SYS_CLOSE:
		return s.closeSock(a)
	case unix.SYS_FCNTL:
		if d, ok := s.fds[int(a[0])]; ok && a[1] == unix.F_SETPIPE_SZ && d.f.kind == "fifo" {
			return true, nil
		}
	}
	return false, nil
}

// sockAt is the socket at fd.
func (s *fdSim) sockAt(fd uint64) (*simSock, *simFile, error) {
	d, err := s.get(fd)
	if err != nil {
		return nil, nil, err
	}
	if d.f.sk == nil {
		return nil, nil, fmt.Errorf("fd %d is %v, not a socket: %w", fd, d.f, unix.ENOTSOCK)
	}
	return d.f.sk, d.f, nil
}

func (s *fdSim) newSock(typ uint64) (*simFile, error) {
	t := int(typ &^ (unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC))
	if t != unix.SOCK_STREAM && t != unix.SOCK_DGRAM && t != unix.SOCK_SEQPACKET {
		return nil, unix.EINVAL
	}
	s.w().socks++
	k := &simSock{n: s.w().socks, typ: t, opts: map[int][]byte{}}
	return &simFile{kind: "socket", sk: k, flags: typ & unix.SOCK_NONBLOCK}, nil
}

func (s *fdSim) socket(a [6]uint64) error {
	if a[0] != unix.AF_UNIX || a[2] != 0 {
		return unix.EAFNOSUPPORT
	}
	f, err := s.newSock(a[1])
	if err != nil {
		return err
	}
	s.install(s.lowest(0), f, a[1]&unix.SOCK_CLOEXEC != 0)
	return nil
}

func (s *fdSim) socketpair(a [6]uint64) error {
	if _, err := s.mem(a[3], 8); err != nil {
		return err
	}
	if a[0] != unix.AF_UNIX || a[2] != 0 {
		return unix.EAFNOSUPPORT
	}
	f0, err := s.newSock(a[1])
	if err != nil {
		return err
	}
	f1, _ := s.newSock(a[1])
	f0.sk.peer, f1.sk.peer = f1.sk, f0.sk
	s.install(s.lowest(0), f0, a[1]&unix.SOCK_CLOEXEC != 0)
	s.install(s.lowest(0), f1, a[1]&unix.SOCK_CLOEXEC != 0)
	return nil
}

// sockName reads a sockaddr_un and returns the name as simWorld keys it.
func (s *fdSim) sockName(addr, n uint64) (string, error) {
	b, err := s.mem(addr, n)
	if err != nil {
		return "", err
	}
	if n < 3 || n > 110 || binary.LittleEndian.Uint16(b) != unix.AF_UNIX {
		return "", fmt.Errorf("sockaddr of %d bytes: %w", n, unix.EINVAL)
	}
	name := b[2:]
	if name[0] == 0 {
		return "@" + string(name[1:]), nil
	}
	p := strings.TrimRight(string(name), "\x00")
	if !path.IsAbs(p) {
		p = path.Join(s.w().cwd, p)
	}
	return p, nil
}

func (s *fdSim) bind(a [6]uint64) error {
	k, _, err := s.sockAt(a[0])
	if err != nil {
		return err
	}
	name, err := s.sockName(a[1], a[2])
	if err != nil {
		return err
	}
	w := s.w()
	if k.name != "" {
		return fmt.Errorf("%v already bound: %w", k, unix.EINVAL)
	}
	if old := w.names[name]; (old != nil && !old.dead && strings.HasPrefix(name, "@")) || w.nodes[name] != nil {
		return fmt.Errorf("bind %s: %w", name, unix.EADDRINUSE)
	}
	k.name, w.names[name] = name, k
	if !strings.HasPrefix(name, "@") {
		w.nodes[name] = &simNode{kind: "socket", mode: 0o755, linked: true}
	}
	return nil
}

func (s *fdSim) listen(a [6]uint64) error {
	k, _, err := s.sockAt(a[0])
	if err != nil {
		return err
	}
	if k.typ == unix.SOCK_DGRAM || k.name == "" || k.peer != nil {
		return fmt.Errorf("listen on %v: %w", k, unix.EINVAL)
	}
	k.listening, k.backlog = true, int(a[1])
	return nil
}

// target finds the live socket bound to a name.
func (s *fdSim) target(addr, n uint64) (*simSock, error) {
	name, err := s.sockName(addr, n)
	if err != nil {
		return nil, err
	}
	t := s.w().names[name]
	if t == nil || t.dead || (!strings.HasPrefix(name, "@") && s.w().nodes[name] == nil) {
		return nil, fmt.Errorf("%s: %w", name, unix.ECONNREFUSED)
	}
	return t, nil
}

func (s *fdSim) connect(a [6]uint64) error {
	k, f, err := s.sockAt(a[0])
	if err != nil {
		return err
	}
	t, err := s.target(a[1], a[2])
	if err != nil {
		return err
	}
	switch {
	case t.typ != k.typ:
		return unix.EPROTOTYPE
	case k.typ == unix.SOCK_DGRAM:
		if t.peer != nil && t.peer != k {
			return fmt.Errorf("%v: its peer is another socket: %w", t, unix.EPERM)
		}
		k.peer = t
	case !t.listening:
		return fmt.Errorf("%v does not listen: %w", t, unix.ECONNREFUSED)
	case len(t.pending) > t.backlog:
		if f.flags&unix.O_NONBLOCK == 0 {
			return fmt.Errorf("backlog of %v full: a blocking connect would hang", t)
		}
		return unix.EAGAIN
	default:
		if k.peer != nil {
			return unix.EISCONN
		}
		k.peer, t.pending = t, append(t.pending, k)
	}
	return nil
}

func (s *fdSim) sendto(a [6]uint64) error {
	k, _, err := s.sockAt(a[0])
	if err != nil {
		return err
	}
	if a[3]&unix.MSG_DONTWAIT == 0 {
		return fmt.Errorf("send without MSG_DONTWAIT: could block the task")
	}
	msg, err := s.mem(a[1], a[2])
	if err != nil {
		return err
	}
	to := k.peer
	if a[4] != 0 {
		if k.typ != unix.SOCK_DGRAM {
			return unix.EISCONN
		}
		if to, err = s.target(a[4], a[5]); err != nil {
			return err
		}
	}
	switch {
	case to == nil:
		return unix.ENOTCONN
	case to.dead:
		return unix.ECONNREFUSED
	case k.shutdown&2 != 0:
		return unix.EPIPE
	case to.listening || (k.typ != unix.SOCK_DGRAM && to.peer != k):
		return fmt.Errorf("send to %v, not connected back: %w", to, unix.ENOTCONN)
	case k.typ == unix.SOCK_DGRAM && to.peer != nil && to.peer != k:
		return fmt.Errorf("send to %v, connected to another: %w", to, unix.EPERM)
	}
	to.queue = append(to.queue, append([]byte(nil), msg...))
	return nil
}

func (s *fdSim) shutdownSock(a [6]uint64) error {
	k, _, err := s.sockAt(a[0])
	if err != nil {
		return err
	}
	if a[1] > 2 {
		return unix.EINVAL
	}
	mode := int(a[1]) + 1
	k.shutdown |= mode
	if p := k.peer; p != nil && k.typ != unix.SOCK_DGRAM && !p.listening {
		// The peer's side of the same directions (net/unix af_unix.c).
		peerMode := 0
		if mode&1 != 0 {
			peerMode |= 2
		}
		if mode&2 != 0 {
			peerMode |= 1
		}
		p.shutdown |= peerMode
	}
	return nil
}

func (s *fdSim) setsockopt(a [6]uint64) error {
	k, _, err := s.sockAt(a[0])
	if err != nil {
		return err
	}
	if a[1] != unix.SOL_SOCKET {
		return unix.ENOPROTOOPT
	}
	v, err := s.mem(a[3], a[4])
	if err != nil {
		return err
	}
	k.opts[int(a[2])] = append([]byte(nil), v...)
	return nil
}

// refs counts the descriptors of f in this task and the others.
func (s *fdSim) refs(f *simFile) int {
	n := 0
	for _, d := range s.fds {
		if d.f == f {
			n++
		}
	}
	for _, t := range s.others {
		for _, o := range t {
			if o == f {
				n++
			}
		}
	}
	return n
}

// closeSock closes a socket's descriptor; its last one kills it, and a
// stream peer is then shut down both ways.
func (s *fdSim) closeSock(a [6]uint64) (bool, error) {
	d, ok := s.fds[int(a[0])]
	if !ok || d.f.sk == nil {
		return false, nil
	}
	delete(s.fds, int(a[0]))
	if s.refs(d.f) > 0 {
		return true, nil
	}
	k := d.f.sk
	k.dead = true
	if p := k.peer; p != nil && k.typ != unix.SOCK_DGRAM && !p.listening {
		p.shutdown = 3
	}
	return true, nil
}

func (s *fdSim) chdir(nr uintptr, a [6]uint64) error {
	if nr == unix.SYS_FCHDIR {
		d, err := s.get(a[0])
		if err != nil {
			return err
		}
		s.w().cwd = d.f.path
		return nil
	}
	p, err := s.str(a[0])
	if err != nil {
		return err
	}
	if !path.IsAbs(p) {
		p = path.Join(s.w().cwd, p)
	}
	s.w().cwd = p
	return nil
}

// pathCall carries out unlinkat, fchmodat, fchownat and utimensat on a
// node of the world.
func (s *fdSim) pathCall(nr uintptr, a [6]uint64) error {
	if a[0] != plan.AtFdcwd {
		return fmt.Errorf("dirfd %#x is not AT_FDCWD", a[0])
	}
	p, err := s.str(a[1])
	if err != nil {
		return err
	}
	if !path.IsAbs(p) {
		p = path.Join(s.w().cwd, p)
	}
	n := s.w().nodes[p]
	if n == nil {
		return fmt.Errorf("%s: %w", p, unix.ENOENT)
	}
	switch nr {
	case unix.SYS_UNLINKAT:
		n.linked = false
		delete(s.w().nodes, p)
	case unix.SYS_FCHMODAT:
		n.mode = uint32(a[2])
	case unix.SYS_FCHOWNAT:
		n.uid, n.gid = a[2], a[3]
	case unix.SYS_UTIMENSAT:
		b, err := s.mem(a[2], 32)
		if err != nil {
			return err
		}
		for i := range n.times {
			n.times[i] = binary.LittleEndian.Uint64(b[8*i:])
		}
	}
	return nil
}

// nodeCall carries out calls on a descriptor of a node file.
func (s *fdSim) nodeCall(nr uintptr, a [6]uint64) error {
	d, err := s.get(a[0])
	if err != nil {
		return err
	}
	n := d.f.node
	if n == nil || n.kind != "file" {
		return fmt.Errorf("fd %d is %v, not a file the plan made: %w", a[0], d.f, unix.EINVAL)
	}
	writable := d.f.flags&unix.O_ACCMODE != unix.O_RDONLY
	switch nr {
	case unix.SYS_FTRUNCATE:
		if !writable {
			return unix.EINVAL
		}
		n.data = append(n.data, make([]byte, max(0, int(a[1])-len(n.data)))...)[:a[1]]
	case unix.SYS_PWRITE64:
		if !writable {
			return unix.EBADF
		}
		b, err := s.mem(a[1], a[2])
		if err != nil {
			return err
		}
		end := int(a[3]) + len(b)
		if end > len(n.data) {
			n.data = append(n.data, make([]byte, end-len(n.data))...)
		}
		copy(n.data[a[3]:], b)
	case unix.SYS_FCHOWN:
		n.uid, n.gid = a[1], a[2]
	case unix.SYS_FCHMOD:
		n.mode = uint32(a[1])
	}
	return nil
}

// openNode opens a FIFO or a file of the world, or creates a file; other
// paths are left to the plain open.
func (s *fdSim) openNode(a [6]uint64) (bool, error) {
	p, err := s.str(a[1])
	if err != nil {
		return true, err
	}
	abs := p
	if !path.IsAbs(abs) {
		abs = path.Join(s.w().cwd, p)
	}
	flags := a[2]
	n := s.w().nodes[abs]
	switch {
	case flags&unix.O_PATH != 0:
		s.install(s.lowest(0), &simFile{kind: "file", path: abs, flags: flags}, flags&unix.O_CLOEXEC != 0)
		return true, nil
	case flags&unix.O_CREAT != 0:
		if n != nil && flags&unix.O_EXCL != 0 {
			return true, fmt.Errorf("%s: %w", abs, unix.EEXIST)
		}
		if n == nil {
			n = &simNode{kind: "file", mode: uint32(a[3]), linked: true}
			s.w().nodes[abs] = n
		}
	case n == nil:
		return false, nil
	}
	s.opened[abs]++
	f := &simFile{kind: n.kind, path: abs, flags: flags &^ (unix.O_CLOEXEC | unix.O_CREAT | unix.O_EXCL), node: n}
	if n.kind == "fifo" {
		f.pipe = n.pipe
	}
	s.install(s.lowest(0), f, flags&unix.O_CLOEXEC != 0)
	return true, nil
}

// writeFifo writes to a FIFO opened for writing.
func (s *fdSim) writeFifo(a [6]uint64) (bool, error) {
	d, ok := s.fds[int(a[0])]
	if !ok || d.f.kind != "fifo" {
		return false, nil
	}
	if d.f.flags&unix.O_ACCMODE == unix.O_RDONLY {
		return true, unix.EBADF
	}
	b, err := s.mem(a[1], a[2])
	if err != nil {
		return true, err
	}
	d.f.pipe.data = append(d.f.pipe.data, b...)
	return true, nil
}
