package mounts

// Mount propagation: the peer groups (shared:N) and masters (master:N)
// of the dumped mounts, given back once every mount of a namespace is
// made private, with move_mount(MOVE_MOUNT_SET_GROUP) as CRIU's mount-v2
// does: a mount joins the group of another, in any namespace of the
// tree, without a bind that would propagate on the way.

import (
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// move_mount flags (linux/mount.h) that x/sys/unix does not name.
const (
	moveMountFEmptyPath = 0x4
	moveMountTEmptyPath = 0x40
	moveMountSetGroup   = 0x100
)

// Groups are the peer groups given back so far, across the tree's mount
// namespaces: their mounts, open, by dumped group id. A namespace copied
// from another shares its groups.
type Groups struct {
	fds map[uint32][]member
}

// member is a mount of a peer group: open at fd, root the part of its
// filesystem it shows. A mount joins a group through a member whose
// root holds its own (the kernel's rule for MOVE_MOUNT_SET_GROUP).
type member struct {
	fd   int
	root string
}

// NewGroups returns an empty set of groups.
func NewGroups() *Groups { return &Groups{fds: map[uint32][]member{}} }

// Close closes the mounts the groups hold open.
func (g *Groups) Close() {
	if g == nil {
		return
	}
	for _, ms := range g.fds {
		for _, m := range ms {
			unix.Close(m.fd)
		}
	}
	g.fds = map[uint32][]member{}
}

// via finds a member of group id whose root holds root.
func (g *Groups) via(id uint32, root string) (int, bool) {
	for _, m := range g.fds[id] {
		if within(root, m.root) {
			return m.fd, true
		}
	}
	return -1, false
}

// propagate gives each mount of steps open at fds (by dumped mount id),
// private until now, its dumped peer group and master. A master no
// mount of the tree is a peer of (a mount of the host's) is left out:
// the mount stays private of it. A mount joins a group whose member is
// already in place, else its master's as a slave, and then starts its
// own group: masters are given back before their slaves.
func (g *Groups) propagate(steps []Step, fds map[uint32]int) error {
	if g == nil {
		return nil
	}
	known := map[uint32]bool{}
	for id := range g.fds {
		known[id] = true
	}
	var pending []Step
	// The widest mount of a group first: the others join through it.
	steps = slices.Clone(steps)
	slices.SortStableFunc(steps, func(a, b Step) int { return len(a.Entry.GetRoot()) - len(b.Entry.GetRoot()) })
	for _, s := range steps {
		if id := s.Entry.GetSharedId(); id != 0 {
			known[id] = true
		}
		if _, ok := fds[s.Entry.GetMntId()]; ok && (s.Entry.GetSharedId() != 0 || s.Entry.GetMasterId() != 0) {
			pending = append(pending, s)
		}
	}
	for len(pending) > 0 {
		var rest []Step
		for _, s := range pending {
			shared, master := s.Entry.GetSharedId(), s.Entry.GetMasterId()
			if !known[master] {
				master = 0
			}
			root := s.Entry.GetRoot()
			_, haveShared := g.via(shared, root)
			_, haveMaster := g.via(master, root)
			if !(shared != 0 && haveShared) && master != 0 && !haveMaster {
				rest = append(rest, s)
				continue
			}
			if err := g.set(fds[s.Entry.GetMntId()], root, shared, master); err != nil {
				return fmt.Errorf("mount %d at %s: propagation (shared %d, master %d): %w", s.Entry.GetMntId(), s.Target, shared, master, err)
			}
		}
		if len(rest) == len(pending) {
			return fmt.Errorf("mounts %d, ...: their peer groups and masters wait for each other", rest[0].Entry.GetMntId())
		}
		pending = rest
	}
	return nil
}

// set gives the private mount open at fd, showing root of its
// filesystem, group shared (0: none), as a slave of group master (0:
// none).
func (g *Groups) set(fd int, root string, shared, master uint32) error {
	if from, ok := g.via(shared, root); ok && shared != 0 {
		// Its peer has the master too.
		if err := setGroup(from, fd); err != nil {
			return err
		}
		return g.add(shared, fd, root)
	}
	if master != 0 {
		from, _ := g.via(master, root)
		if err := setGroup(from, fd); err != nil {
			return err
		}
		if err := setPropagation(fd, unix.MS_SLAVE); err != nil {
			return err
		}
	}
	if shared == 0 {
		return nil
	}
	if err := setPropagation(fd, unix.MS_SHARED); err != nil {
		return err
	}
	return g.add(shared, fd, root)
}

// add keeps a copy of fd, a mount showing root, as a member of group id.
func (g *Groups) add(id uint32, fd int, root string) error {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	g.fds[id] = append(g.fds[id], member{dup, root})
	return nil
}

// setGroup puts the private mount open at to in the peer group of the
// one open at from, and under its master.
func setGroup(from, to int) error {
	if err := unix.MoveMount(from, "", to, "", moveMountSetGroup|moveMountFEmptyPath|moveMountTEmptyPath); err != nil {
		return fmt.Errorf("move_mount(MOVE_MOUNT_SET_GROUP): %w", err)
	}
	return nil
}

// setPropagation sets the propagation type of the mount open at fd.
func setPropagation(fd int, how uint64) error {
	attr := unix.MountAttr{Propagation: how}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("mount_setattr(propagation %#x): %w", how, err)
	}
	return nil
}

// unbindable makes the mounts of steps open at fds that were unbindable
// so again, once every bind of the namespace is made: binds from them
// come first.
func unbindable(steps []Step, fds map[uint32]int) error {
	for _, s := range steps {
		fd, ok := fds[s.Entry.GetMntId()]
		if !ok || s.Entry.GetFlags()&unix.MS_UNBINDABLE == 0 {
			continue
		}
		if err := setPropagation(fd, unix.MS_UNBINDABLE); err != nil {
			return fmt.Errorf("mount %d at %s: %w", s.Entry.GetMntId(), s.Target, err)
		}
	}
	return nil
}
