package restore

// Network namespaces of tasks other than the root: a task that unshared
// CLONE_NEWNET at dump, or entered another namespace of the tree, is
// born in its parent's namespace, then joins the namespace made for
// the first task of it, or unshares a new one whose links, addresses,
// routes and rules amber restores from its images, before it opens any
// file: its sockets are made in their own namespaces
// (sockets.RestoreInput.NetnsPid).

import (
	"fmt"

	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/namespaces"
)

// enterNetNs puts task, just forked for c by its parent p, in c's
// network namespace, if it is not its parent's.
func (r *restorer) enterNetNs(task *compel.Task, insn uint64, p *process, c *taskImages) error {
	want := c.ids.GetNetNsId()
	if want == 0 || want == p.t.ids.GetNetNsId() {
		return nil
	}
	if pid, ok := r.netns[want]; ok {
		return joinNs(task, insn, pid, namespaces.Net)
	}
	if _, err := task.SyscallOK(insn, unix.SYS_UNSHARE, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("pid %d: unshare its network namespace: %w", c.pid, err)
	}
	if err := namespaces.RestoreNet(r.tree.dir, want, task.Pid, r.netOptions(r.tree)); err != nil {
		return fmt.Errorf("pid %d: %w", c.pid, err)
	}
	r.netns[want] = c.pid
	r.opts.Log.Infof("pid %d: network namespace %d made", c.pid, want)
	return nil
}

// netOptions are how the tree's network namespaces are set up.
func (r *restorer) netOptions(tree *treeImages) namespaces.NetOptions {
	opts := namespaces.NetOptions{Empty: r.opts.EmptyNet, Veths: r.opts.ExtVeths}
	for _, t := range tree.tasks {
		if id := t.ids.GetNetNsId(); id != 0 && id != tree.root.ids.GetNetNsId() {
			opts.Several = true
		}
	}
	return opts
}
