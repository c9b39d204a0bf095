package files

import (
	"fmt"
	"path"

	"golang.org/x/sys/unix"
)

// Terminals whose master was outside the tree: a container's. runc
// gives the container a pty slave and its master to whoever listens on
// --console-socket; the dump (with CRIU's orphan_pts_master) records the
// slave alone. The restore makes a new pty in the devpts the slave's
// path names, as the tree sees it once its mounts are made, gives the
// tasks its slave, and hands the master to the client, which passes it
// on to the console socket: CRIU's orphan-pts-master notification.

// OrphanInput is what making the orphan pty needs, once the tree's
// mounts are made.
type OrphanInput struct {
	// Root is the tree's root as amber reaches it: "/", or
	// /proc/PID/root for a tree with a mount namespace of its own. The
	// pty is made at the ptmx beside the slave's dumped path there.
	Root string
	// Give hands the new master to the client; amber closes its own
	// copy with the other terminals.
	Give func(master int) error
}

// OpenOrphan makes the pty of the slave whose master was not dumped, if
// the images have one (TtyInput.OrphanPts), and hands its master over.
// The session leader it controlled gets it back as its controlling
// terminal.
func (t *Terminals) OpenOrphan(in OrphanInput) error {
	g := t.orphan
	if g == nil {
		return nil
	}
	if in.Give == nil {
		return fmt.Errorf("%v: its master was not dumped, and nobody takes a new one", g)
	}
	m, ok := t.premade[g.index]
	index := g.index
	if !ok {
		var err error
		if m, index, err = t.openOrphanPtmx(g, in.Root); err != nil {
			return fmt.Errorf("%v: %w", g, err)
		}
	}
	if err := t.setUpPty(g, t.files, nil, m, index); err != nil {
		return fmt.Errorf("%v: %w", g, err)
	}
	if err := in.Give(m); err != nil {
		return fmt.Errorf("%v: hand its new master over: %w", g, err)
	}
	if t.orphanCtty != nil {
		t.addCtty(*t.orphanCtty)
	}
	return nil
}

// AdoptPtys takes the masters of ptys made while mounting, by index: a
// bind mount of a slave (runc's /dev/console) needs its pty first. The
// orphan pty is one of them if its index is there; all are closed with
// the other terminals.
func (t *Terminals) AdoptPtys(masters map[uint32]int) {
	for index, fd := range masters {
		if t.premade == nil {
			t.premade = map[uint32]int{}
		}
		t.premade[index] = fd
		t.own = append(t.own, fd)
	}
}

// openOrphanPtmx opens the ptmx beside the slave's dumped path, under
// root, until it has the dumped index, as CRIU does.
func (t *Terminals) openOrphanPtmx(g *ttyGroup, root string) (int, uint32, error) {
	ptmx := path.Join(path.Dir(ttyPath(t.files, g.slaves[0])), "ptmx")
	r, err := openTreeRoot(root)
	if err != nil {
		return -1, 0, err
	}
	defer r.close()
	open := func() (int, error) { return r.open(ptmx, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC) }
	m, index, err := OpenPtmxIndex(open, ptmx, g.index)
	if err != nil {
		return -1, 0, err
	}
	t.own = append(t.own, m)
	return m, index, nil
}

// treeRoot opens paths as the restored tree sees them: a pty made at
// the tree's ptmx belongs to the tree's devpts, whose indexes and
// /dev/pts nodes are the tree's.
type treeRoot struct {
	fd int // the tree's root, O_PATH; -1: amber's own
}

// openTreeRoot opens root, the tree's root as amber reaches it: "/", or
// /proc/PID/root for a tree with a mount namespace of its own.
func openTreeRoot(root string) (treeRoot, error) {
	if root == "" || root == "/" {
		return treeRoot{fd: -1}, nil
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return treeRoot{}, fmt.Errorf("open the tree's root %s: %w", root, err)
	}
	return treeRoot{fd: fd}, nil
}

// open opens name, an absolute path as the tree sees it, with flags:
// symlinks (/dev/ptmx to pts/ptmx) resolve inside the tree's root.
func (r treeRoot) open(name string, flags int) (int, error) {
	if r.fd < 0 {
		return unix.Open(name, flags, 0)
	}
	return unix.Openat2(r.fd, name, &unix.OpenHow{Flags: uint64(flags), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
}

func (r treeRoot) close() {
	if r.fd >= 0 {
		unix.Close(r.fd)
	}
}
