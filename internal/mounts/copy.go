package mounts

// A mount namespace a task of the tree unshared: restored as a copy of
// its parent's, made like the dumped one.

import (
	"fmt"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
	"golang.org/x/sys/unix"

	"amber/internal/image"
)

// RestoreCopy makes the mount namespace pid is in, a copy of the
// namespace of parent (restored already: the task unshared
// CLONE_NEWNS), into that of mountpoints-ID.img: the copied mounts the
// images name stay, those they do not are unmounted, and the others
// are made as Restore makes them. A copy whose root mount is not the
// one of the images (the task pivoted its root) is refused.
func RestoreCopy(dir image.Dir, id, parentID uint32, pid int, parent *Restored, opts RestoreOptions) (*Restored, error) {
	name := dir.MountpointsPath(id)
	entries, err := Load(dir, id)
	if err != nil {
		return nil, err
	}
	parentEntries, err := Load(dir, parentID)
	if err != nil {
		return nil, err
	}
	steps, err := Plan(entries, opts.External)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	current, err := readMountinfo(pid)
	if err != nil {
		return nil, err
	}
	r := newRestored(pid, opts.IDs)
	r.procOver = parent != nil && parent.procOver
	if r.procOver {
		// amber's /proc over the tree's, the last mount at /proc: kept
		// until Finish.
		current = withoutLastAt(current, "/proc")
	}
	keep, drop, err := matchCopy(steps, current, parentEntries)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	err = onThread(pid, nsKinds, func() error { return r.reconcile(dir, steps, keep, drop, opts) })
	if err != nil {
		for _, fd := range r.TakePtys() {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return r, nil
}

// withoutLastAt drops the last mount at mountpoint mp from infos, with
// the mounts under it: amber's /proc laid over the tree's is bound with
// its submounts in a user namespace of the tree's (bindAmberProc), which
// are locked to it there and go with it at Finish.
func withoutLastAt(infos []Info, mp string) []Info {
	for i := len(infos) - 1; i >= 0; i-- {
		if infos[i].Mountpoint != mp {
			continue
		}
		gone := map[uint32]bool{infos[i].ID: true}
		for grew := true; grew; {
			grew = false
			for _, in := range infos {
				if gone[in.Parent] && !gone[in.ID] {
					gone[in.ID], grew = true, true
				}
			}
		}
		return slices.DeleteFunc(slices.Clone(infos), func(in Info) bool { return gone[in.ID] })
	}
	return infos
}

// matchCopy pairs the steps, the dumped mounts, with the mounts of the
// copy (current) that are the same mount: the root with the root, then
// each mount whose parent is paired with a mount of the copy at the
// same mountpoint under that parent, of the same filesystem type and
// root. Only a mount the namespace copied at dump can be paired: one
// the parent namespace's mounts (parent) have too, at the same place,
// of the same filesystem and root. keep maps the dumped ids of the steps that are there already to
// the copy's ids; drop lists the mountpoints of the copy's unpaired
// mounts, children first.
func matchCopy(steps []Step, current []Info, parent []*mnt.MntEntry) (keep map[uint32]uint32, drop []string, err error) {
	ids := map[uint32]bool{}
	for _, c := range current {
		ids[c.ID] = true
	}
	pair := map[uint32]uint32{} // dumped mount id -> the copy's
	taken := map[uint32]bool{}
	for _, s := range steps {
		e := s.Entry
		if s.How != Root && !slices.ContainsFunc(parent, func(p *mnt.MntEntry) bool { return copyOf(e, p) }) {
			continue
		}
		for _, c := range current {
			if taken[c.ID] || !sameMount(e, c) {
				continue
			}
			if s.How == Root {
				if ids[c.Parent] && c.Parent != c.ID {
					continue
				}
			} else if p, ok := pair[e.GetParentMntId()]; !ok || c.Parent != p {
				continue
			}
			pair[e.GetMntId()] = c.ID
			taken[c.ID] = true
			break
		}
		if s.How == Root && len(pair) == 0 {
			return nil, nil, fmt.Errorf("mount %d, the root (%s at /, root %s), is not the root of the namespace it was copied from: a root pivoted after unshare is not supported",
				e.GetMntId(), fsName(e), e.GetRoot())
		}
	}
	for i := len(current) - 1; i >= 0; i-- {
		if !taken[current[i].ID] {
			drop = append(drop, current[i].Mountpoint)
		}
	}
	return pair, drop, nil
}

// copyOf tells whether e may be a copy of p, a mount of the namespace
// e's was copied from: the same place, filesystem and root.
func copyOf(e, p *mnt.MntEntry) bool {
	return e.GetMountpoint() == p.GetMountpoint() && e.GetRootDev() == p.GetRootDev() && e.GetRoot() == p.GetRoot()
}

// sameMount tells whether c, a mount of the copy, can be e, a dumped
// mount: the same mountpoint, filesystem type and root.
func sameMount(e *mnt.MntEntry, c Info) bool {
	return e.GetMountpoint() == c.Mountpoint && e.GetRoot() == c.Root && fsName(e) == fsName(entryOf(c, ""))
}

// reconcile runs in the copy: it makes every mount private, unmounts
// drop, makes the steps not kept, in order, then gives every mount its
// propagation (kept ones too: their groups span namespaces).
func (r *Restored) reconcile(dir image.Dir, steps []Step, keep map[uint32]uint32, drop []string, opts RestoreOptions) error {
	// Nothing made here may propagate to the namespace it was copied from.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the copied mount namespace private: %w", err)
	}
	for _, mp := range drop {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s, which the copied namespace has and the dumped one had not: %w", mp, err)
		}
		if opts.Logf != nil {
			opts.Logf("unmount %s from the copied namespace", mp)
		}
	}
	rootFd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the namespace's root: %w", err)
	}
	defer unix.Close(rootFd)
	fds := map[uint32]int{}
	defer closeAll(fds)
	targets := targetsOf(steps)
	for _, s := range steps {
		if id, ok := keep[s.Entry.GetMntId()]; ok {
			if err := openKept(fds, s, rootFd, id); err != nil {
				return err
			}
			continue
		}
		fd, err := r.mount(dir, s, fds, targets, rootFd)
		if err := made(fds, s, opts, fd, err); err != nil {
			return err
		}
	}
	if err := opts.Groups.propagate(steps, fds); err != nil {
		return err
	}
	return unbindable(steps, fds)
}

// openKept opens the copied mount id that stands for step s into fds,
// if its mountpoint reaches it: one under another at the same place
// keeps no propagation.
func openKept(fds map[uint32]int, s Step, rootFd int, id uint32) error {
	fd, err := inRoot(rootFd, s.Target, unix.O_PATH)
	if err != nil {
		return fmt.Errorf("open %s in the copied namespace: %w", s.Target, err)
	}
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &st); err != nil || st.Mnt_id != uint64(id) {
		unix.Close(fd)
		return nil
	}
	fds[s.Entry.GetMntId()] = fd
	return nil
}
