package sockets

// The network namespace of the tree's sockets. sock_diag lists the
// sockets of the namespace its netlink socket was made in, so a tree in
// a network namespace of its own (a container, zdtm's ns flavor) is
// listed through a netlink socket made there; and the segments a
// restore makes for a half-closed connection (tcp_fin.go) reach it only
// through a raw socket made in the connection's namespace.

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// sockNetns are the network namespaces of the sockets a dump meets
// (SIOCGSKNS), each with its id in the images (the socket entries'
// ns_id): the namespaces the tree's tasks are in, which the dump's
// namespace table numbers (SetNetnsLookup). A socket may belong to a
// namespace other than its holder's (made before the holder entered
// another), as long as some task of the tree is in it: the restore
// makes it there. sock_diag lists each namespace's sockets once, through
// a netlink socket made there.
type sockNetns struct {
	// lookup is the dump's id of the network namespace of an inode
	// (nil: the sockets must all be in one namespace, id 0).
	lookup func(ino uint64) (uint32, bool)
	all    map[uint64]*netnsRef // by inode
	// cur is the namespace of the socket being added (check).
	cur *netnsRef
}

// netnsRef is one network namespace sockets of the dump belong to.
type netnsRef struct {
	ino uint64
	id  uint32 // in the images; 0 without a lookup
	fd  int    // amber's descriptor of it, to make sock_diag sockets in
	// listed are the kinds of sockets sock_diag listed in it.
	listed map[string]bool
}

// check finds the namespace of socket s (inode ino, of family), which
// pid holds, and makes it the current one. It must be one the dump
// numbered: a task of the tree is in it. A socket in flight, which
// amber holds (pid is amber's), too.
func (n *sockNetns) check(pid, s int, ino uint64, family int) error {
	nsfd, err := unix.IoctlRetInt(s, unix.SIOCGSKNS)
	if err != nil {
		return fmt.Errorf("%s socket:[%d]: its network namespace (SIOCGSKNS): %w", familyName(family), ino, err)
	}
	var theirs unix.Stat_t
	if err := unix.Fstat(nsfd, &theirs); err != nil {
		unix.Close(nsfd)
		return fmt.Errorf("%s socket:[%d]: stat its network namespace: %w", familyName(family), ino, err)
	}
	if r, ok := n.all[theirs.Ino]; ok {
		unix.Close(nsfd)
		n.cur = r
		return nil
	}
	var id uint32
	switch {
	case n.lookup != nil:
		var ok bool
		if id, ok = n.lookup(theirs.Ino); !ok {
			unix.Close(nsfd)
			return fmt.Errorf("%s socket:[%d] (of pid %d) belongs to network namespace net:[%d], which no task of the tree is in: not supported",
				familyName(family), ino, pid, theirs.Ino)
		}
	case len(n.all) > 0:
		unix.Close(nsfd)
		return fmt.Errorf("%s socket:[%d] belongs to network namespace net:[%d], the tree's other sockets to another: "+
			"sockets of two network namespaces are not supported", familyName(family), ino, theirs.Ino)
	}
	if n.all == nil {
		n.all = map[uint64]*netnsRef{}
	}
	n.cur = &netnsRef{ino: theirs.Ino, id: id, fd: nsfd, listed: map[string]bool{}}
	n.all[theirs.Ino] = n.cur
	return nil
}

// close closes amber's descriptors of the namespaces.
func (n *sockNetns) close() {
	for _, r := range n.all {
		unix.Close(r.fd)
	}
	n.all, n.cur = nil, nil
}

// unlisted returns the namespaces whose sockets of kind sock_diag has
// not listed yet, and marks them listed.
func (n *sockNetns) unlisted(kind string) []*netnsRef {
	var out []*netnsRef
	for _, r := range n.all {
		if !r.listed[kind] {
			r.listed[kind] = true
			out = append(out, r)
		}
	}
	return out
}

// curIno is the inode of the current socket's namespace, for messages.
func (n *sockNetns) curIno() uint64 {
	if n.cur == nil {
		return 0
	}
	return n.cur.ino
}

// nsID is the id in the images of the current socket's namespace, nil
// without a lookup.
func (n *sockNetns) nsID() *uint32 {
	if n.cur == nil || n.lookup == nil {
		return nil
	}
	return proto.Uint32(n.cur.id)
}

// diagSocket makes a NETLINK_SOCK_DIAG socket in namespace r (amber's
// if nil).
func (r *netnsRef) diagSocket() (int, error) {
	if r == nil {
		return newDiagSocket()
	}
	s, err := socketInNetns(r.fd, newDiagSocket)
	if err != nil {
		return -1, fmt.Errorf("sock_diag: in net:[%d]: %w", r.ino, err)
	}
	return s, nil
}

// socketInNetns runs mk, which makes a socket, in the network namespace
// open at nsfd: a socket belongs for good to the namespace it was made
// in. mk runs on a thread of its own that enters the namespace and
// leaves it; a thread that cannot leave it ends.
func socketInNetns(nsfd int, mk func() (int, error)) (int, error) {
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{-1, err}
			return
		}
		defer self.Close()
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{-1, fmt.Errorf("enter the network namespace: %w", err)}
			return
		}
		fd, err := mk()
		if berr := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); berr != nil {
			done <- result{fd, err} // the thread stays locked and ends with the goroutine
			return
		}
		runtime.UnlockOSThread()
		done <- result{fd, err}
	}()
	r := <-done
	return r.fd, r.err
}

// socketBeside makes a socket with mk in the network namespace of
// socket s (SIOCGSKNS), which may be a namespace other than amber's.
func socketBeside(s int, mk func() (int, error)) (int, error) {
	nsfd, err := unix.IoctlRetInt(s, unix.SIOCGSKNS)
	if err != nil {
		return -1, fmt.Errorf("its network namespace (SIOCGSKNS): %w", err)
	}
	defer unix.Close(nsfd)
	var theirs, ours unix.Stat_t
	if err := unix.Fstat(nsfd, &theirs); err != nil {
		return -1, fmt.Errorf("stat its network namespace: %w", err)
	}
	if err := unix.Stat("/proc/thread-self/ns/net", &ours); err == nil && ours.Ino == theirs.Ino && ours.Dev == theirs.Dev {
		return mk()
	}
	return socketInNetns(nsfd, mk)
}

func newDiagSocket() (int, error) {
	s, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("sock_diag: %w", err)
	}
	return s, nil
}
