package restore

// A tree in a user namespace of its own takes amber's descriptors from
// the stub: its tasks may not take them from amber (pidfd_getfd and
// /proc/AMBER/fd need rights over amber, a process of the parent user
// namespace), but may from the stub, which is in their namespace. amber
// gives the stub every descriptor a plan takes from amber
// (compel.Stub.Put), and the plans name the stub and its numbers.

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"amber/internal/compel"
	"amber/internal/files"
)

// giveToStub gives the stub the descriptors of amber's that the plans
// take (the terminals amber made, the pidfds standing for dead
// processes, --inherit-fd's, amber's namespaces, the tree's /proc, and
// amber's standard input for a --shell-job), once they are all open and
// before any plan is made; from then on h names them by the stub's
// numbers, and the stub as the process to take them from. The root
// holds a pidfd of the stub (newUserNamespace).
func (r *restorer) giveToStub(stub *compel.Stub) error {
	h := r.host
	given := map[int]int{}
	give := func(fd int) (int, error) {
		if n, ok := given[fd]; ok {
			return n, nil
		}
		n, err := stub.Put(fd)
		if err != nil {
			return 0, err
		}
		given[fd] = n
		return n, nil
	}
	// New maps: amber closes its own descriptors by the old ones.
	var err error
	if h.inherit, err = giveAll(h.inherit, give); err != nil {
		return fmt.Errorf("--inherit-fd: %w", err)
	}
	if h.hostNs, err = giveAll(h.hostNs, give); err != nil {
		return fmt.Errorf("amber's namespaces: %w", err)
	}
	if h.deadPidfds, err = giveAll(h.deadPidfds, give); err != nil {
		return fmt.Errorf("the pidfds standing for dead processes: %w", err)
	}
	for _, fd := range h.ttys.AmberFds() {
		if _, err := give(fd); err != nil {
			return fmt.Errorf("terminal: %w", err)
		}
	}
	if h.shellJob {
		if _, err := give(0); err != nil {
			return fmt.Errorf("amber's terminal: %w", err)
		}
	}
	if fd := r.mounts.TreeProc(); fd >= 0 {
		n, err := give(fd)
		if err != nil {
			return fmt.Errorf("the tree's /proc: %w", err)
		}
		h.treeProc = fmt.Sprintf("/proc/%d/fd/%d", stub.Pid, n)
	}
	h.amberPid = stub.Pid
	h.given = given
	return nil
}

// giveAll is m with each of amber's descriptors given to the stub by
// give: a new map, nil for nil.
func giveAll[K cmp.Ordered](m map[K]int, give func(fd int) (int, error)) (map[K]int, error) {
	if m == nil {
		return nil, nil
	}
	out := make(map[K]int, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		n, err := give(m[k])
		if err != nil {
			return nil, fmt.Errorf("%v: %w", k, err)
		}
		out[k] = n
	}
	return out, nil
}

// givenFd is amber's descriptor fd as the plans take it: fd, or the
// number of the stub's copy (giveToStub); -1, which no take succeeds
// with, if the stub was given none.
func (h *host) givenFd(fd int) int {
	if h.given == nil {
		return fd
	}
	if n, ok := h.given[fd]; ok {
		return n
	}
	return -1
}

// ttyFds are the terminals' descriptors the plans take, by TTY file id
// (givenFd).
func (h *host) ttyFds() map[uint32]files.TtyFd {
	fds := h.ttys.FileFds()
	if h.given == nil || fds == nil {
		return fds
	}
	out := make(map[uint32]files.TtyFd, len(fds))
	for id, t := range fds {
		t.Fd = h.givenFd(t.Fd)
		out[id] = t
	}
	return out
}

// ctty is the controlling terminal of session leader pid, named as the
// plans take it (ttyFds).
func (h *host) ctty(pid int) (files.Ctty, bool) {
	c, ok := h.ttys.Ctty(pid)
	if ok {
		c.Fd = h.givenFd(c.Fd)
	}
	return c, ok
}
