package restore

import (
	"fmt"

	"golang.org/x/sys/unix"

	"amber/internal/files"
	"amber/internal/plan"
)

// openTerminals makes the terminals of the tree before any process is
// planned: tasks take them from amber. What cannot be had back exactly is
// logged. The virtual terminals of a tree in a new mount namespace
// (nsFlags) wait for its mounts (Terminals.OpenVTs).
func openTerminals(tree *treeImages, opts Options, nsFlags uintptr) (*files.Terminals, error) {
	in := files.TtyInput{Files: tree.root.files, ShellJob: opts.ShellJob, OrphanPts: opts.OrphanPtsMaster != nil,
		VTsLater: nsFlags&unix.CLONE_NEWNS != 0}
	if tree.root.extra != nil {
		in.Images = tree.root.extra.Ttys
	}
	for _, t := range tree.tasks {
		in.Procs = append(in.Procs, files.TtyProc{Pid: t.pid, Sid: int(t.tree.GetSid()), Pgid: int(t.tree.GetPgid())})
	}
	terms, err := files.OpenTerminals(in)
	if err != nil {
		return nil, err
	}
	for _, w := range terms.Warnings {
		opts.Log.Warnf("%s", w)
	}
	return terms, nil
}

// openOrphanPty makes the pty of a slave whose master was not dumped,
// once the tree's mounts are made (its pty belongs to the tree's devpts,
// nsFlags the new namespaces of the root, pid), and hands its master to
// Options.OrphanPtsMaster.
func (r *restorer) openOrphanPty(pid int, nsFlags uintptr) error {
	root := "/"
	if nsFlags&unix.CLONE_NEWNS != 0 {
		root = fmt.Sprintf("/proc/%d/root", pid)
	}
	before := len(r.host.ttys.Warnings)
	err := r.host.ttys.OpenOrphan(files.OrphanInput{Root: root, Give: r.opts.OrphanPtsMaster})
	for _, w := range r.host.ttys.Warnings[before:] {
		r.opts.Log.Warnf("%s", w)
	}
	return err
}

// planCtty gives a session leader its controlling terminal back, right
// after its setsid and before it forks the rest of its session.
func planCtty(b *plan.Builder, t *taskImages, h *host) {
	if int(t.tree.GetSid()) != t.pid {
		return
	}
	if c, ok := h.ttys.Ctty(t.pid); ok {
		files.PlanCtty(b, h.amberPid, c)
	}
}

// planForeground puts the dumped foreground process group back in the
// foreground of a session leader's terminal, in its final section, when
// every process is in its group.
func planForeground(b *plan.Builder, t *taskImages, h *host) {
	if int(t.tree.GetSid()) != t.pid {
		return
	}
	if c, ok := h.ttys.Ctty(t.pid); ok {
		files.PlanForeground(b, c)
	}
}
