package restore

// Mount namespaces of tasks other than the root: a task that unshared
// CLONE_NEWNS at dump is born in its parent's namespace, then joins the
// namespace made for the first task of it, or unshares it and amber
// makes its mounts as dumped (mounts.RestoreCopy), before it opens any
// file: its files resolve there.

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/fsroot"
	"amber/internal/mounts"
	"amber/internal/namespaces"
)

// mntNs is a restored mount namespace of the tree.
type mntNs struct {
	pid      int // a task in it, by its PID in the images
	restored *mounts.Restored
}

// enterMountNs puts task, just forked for c by its parent p, in c's
// mount namespace, if it is not its parent's.
func (r *restorer) enterMountNs(task *compel.Task, insn uint64, p *process, c *taskImages) error {
	want := c.ids.GetMntNsId()
	if want == 0 || want == p.t.ids.GetMntNsId() {
		return nil
	}
	if ns, ok := r.mntns[want]; ok {
		return joinNs(task, insn, ns.pid, namespaces.Mnt)
	}
	parent, ok := r.mntns[p.t.ids.GetMntNsId()]
	if !ok {
		return fmt.Errorf("pid %d: its parent %d is in mount namespace %d, which the restore did not make: not supported", c.pid, p.t.pid, p.t.ids.GetMntNsId())
	}
	if _, err := task.SyscallOK(insn, unix.SYS_UNSHARE, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("pid %d: unshare its mount namespace: %w", c.pid, err)
	}
	opts := mounts.RestoreOptions{External: r.opts.ExtMounts, Logf: r.opts.Log.Infof, Groups: r.mntGroups, IDs: r.host.users}
	m, err := mounts.RestoreCopy(r.mntDir, want, p.t.ids.GetMntNsId(), task.Pid, parent.restored, opts)
	if err != nil {
		return fmt.Errorf("pid %d: %w", c.pid, err)
	}
	r.host.ttys.AdoptPtys(m.TakePtys())
	r.mntns[want] = mntNs{pid: c.pid, restored: m}
	r.opts.Log.Infof("pid %d: mount namespace %d made from %d's", c.pid, want, p.t.ids.GetMntNsId())
	return nil
}

// joinNs makes task join the namespace of kind k of pid, a task of the
// tree by the PID it sees.
func joinNs(task *compel.Task, insn uint64, pid int, k namespaces.Kind) error {
	pidfd, err := task.SyscallOK(insn, unix.SYS_PIDFD_OPEN, uint64(pid), 0)
	if err != nil {
		return fmt.Errorf("join the %s namespace of pid %d: pidfd_open: %w", k.Name, pid, err)
	}
	_, err = task.SyscallOK(insn, unix.SYS_SETNS, pidfd, uint64(k.Flag))
	if _, cerr := task.SyscallOK(insn, unix.SYS_CLOSE, pidfd); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("join the %s namespace of pid %d: %w", k.Name, pid, err)
	}
	return nil
}

// statIn looks a path of the tree up as a task of mount namespace id
// sees it, under the root of the namespace's first task (not the
// task's own, which may be chrooted), when the tree has namespaces of
// its own.
func (r *restorer) statIn(id uint32) func(string) (os.FileInfo, error) {
	ns, ok := r.mntns[id]
	if r.host.root == nil || !ok || ns.pid == r.tree.root.pid {
		return r.host.stat
	}
	return func(path string) (os.FileInfo, error) {
		root, err := fsroot.Of(r.procPid(ns.pid))
		if err != nil {
			return nil, err
		}
		defer root.Close()
		return root.Stat(path)
	}
}

// loadMountNs reads which namespace of the tree each dumped mount was
// in, from the mountpoints images of the namespaces of tasks.
func (r *restorer) loadMountNs(tree *treeImages) error {
	r.mntOf = map[int32]uint32{}
	seen := map[uint32]bool{}
	for _, t := range tree.tasks {
		id := t.ids.GetMntNsId()
		if t.zombie() || id == 0 || seen[id] {
			continue
		}
		seen[id] = true
		entries, err := mounts.Load(tree.dir, id)
		if err != nil {
			return err
		}
		for _, e := range entries {
			r.mntOf[int32(e.GetMntId())] = id
		}
	}
	return nil
}

// mountRoot is files.RestoreInput.MountRoot for a task in mount
// namespace taskNs: /proc/PID/root of a task of mount mntID's namespace
// through amber's /proc, which the tree sees while it is restored.
func (r *restorer) mountRoot(taskNs uint32) func(mntID int32) string {
	return func(mntID int32) string {
		id, ok := r.mntOf[mntID]
		if !ok || id == taskNs {
			return ""
		}
		ns, ok := r.mntns[id]
		if !ok || !ns.restored.AmberProc() {
			return ""
		}
		return fmt.Sprintf("/proc/%d/root", r.procPid(ns.pid))
	}
}

// finishMountNs takes amber's /proc away from every namespace made.
func (r *restorer) finishMountNs() error {
	for _, ns := range r.mntns {
		if err := ns.restored.Finish(); err != nil {
			return err
		}
	}
	return nil
}
