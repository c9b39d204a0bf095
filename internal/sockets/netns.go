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
)

// sockNetns is the network namespace of the sockets a dump meets: that
// of the first one (SIOCGSKNS). Every socket must be in the network
// namespace of the process holding it, which the restore makes it in,
// and all in one.
type sockNetns struct {
	pid int // a process of the tree in it (/proc/PID/ns/net); 0 while no socket was met
	ino uint64
}

// check records the namespace of socket s (inode ino, of family), which
// pid holds, if it is the first, and refuses it in a namespace other
// than pid's or another socket's. A socket in flight, which amber holds
// (pid is amber's), must be in the namespace of the tree's others.
func (n *sockNetns) check(pid, s int, ino uint64, family int) error {
	nsfd, err := unix.IoctlRetInt(s, unix.SIOCGSKNS)
	if err != nil {
		return fmt.Errorf("%s socket:[%d]: its network namespace (SIOCGSKNS): %w", familyName(family), ino, err)
	}
	defer unix.Close(nsfd)
	var theirs unix.Stat_t
	if err := unix.Fstat(nsfd, &theirs); err != nil {
		return fmt.Errorf("%s socket:[%d]: stat its network namespace: %w", familyName(family), ino, err)
	}
	if pid != os.Getpid() {
		var holder unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &holder); err != nil {
			return fmt.Errorf("network namespace of pid %d: %w", pid, err)
		}
		if theirs.Ino != holder.Ino {
			return fmt.Errorf("%s socket:[%d] belongs to network namespace net:[%d], not to its process's net:[%d]: "+
				"sockets of another network namespace are not supported", familyName(family), ino, theirs.Ino, holder.Ino)
		}
	}
	if n.pid == 0 && pid != os.Getpid() {
		n.pid, n.ino = pid, theirs.Ino
		return nil
	}
	if n.pid != 0 && theirs.Ino != n.ino {
		return fmt.Errorf("%s socket:[%d] belongs to network namespace net:[%d], the tree's other sockets to net:[%d]: "+
			"sockets of two network namespaces are not supported", familyName(family), ino, theirs.Ino, n.ino)
	}
	return nil
}

// diagSocket makes a NETLINK_SOCK_DIAG socket in the namespace (amber's
// while no socket was met).
func (n *sockNetns) diagSocket() (int, error) {
	if n == nil || n.pid == 0 {
		return newDiagSocket()
	}
	target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", n.pid))
	if err != nil {
		return -1, fmt.Errorf("sock_diag: network namespace of pid %d: %w", n.pid, err)
	}
	defer target.Close()
	s, err := socketInNetns(int(target.Fd()), newDiagSocket)
	if err != nil {
		return -1, fmt.Errorf("sock_diag: in net:[%d]: %w", n.ino, err)
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
