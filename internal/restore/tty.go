package restore

import (
	"fmt"

	"golang.org/x/sys/unix"

	"amber/internal/files"
	"amber/internal/plan"
)

// prepareTerminals sorts the terminals of the tree before any process
// is made (files.PrepareTerminals); openTerminals makes them. What cannot
// be had back exactly is logged.
func prepareTerminals(tree *treeImages, opts Options, h *host) (*files.Terminals, error) {
	in := files.TtyInput{Files: tree.root.files, ShellJob: opts.ShellJob, OrphanPts: opts.OrphanPtsMaster != nil, Users: h.users}
	if tree.root.extra != nil {
		in.Images = tree.root.extra.Ttys
	}
	for _, t := range tree.tasks {
		in.Procs = append(in.Procs, files.TtyProc{Pid: t.pid, Sid: int(t.tree.GetSid()), Pgid: int(t.tree.GetPgid())})
	}
	terms, err := files.PrepareTerminals(in)
	if err != nil {
		return nil, err
	}
	for _, w := range terms.Warnings {
		opts.Log.Warnf("%s", w)
	}
	return terms, nil
}

// openTerminals makes the terminals of the tree once its mounts are
// made (nsFlags the new namespaces of the root, pid): a tree with a
// mount namespace of its own has its ptys made at its own ptmx, in its
// devpts, as its /dev/pts shows them. A slave whose master was not
// dumped gets a new pty, whose master goes to Options.OrphanPtsMaster.
// Tasks take them all from amber before any is released.
func (r *restorer) openTerminals(pid int, nsFlags uintptr) error {
	root := "/"
	if nsFlags&unix.CLONE_NEWNS != 0 {
		root = fmt.Sprintf("/proc/%d/root", pid)
	}
	terms := r.host.ttys
	before := len(terms.Warnings)
	err := terms.Open(root)
	if err == nil {
		err = terms.OpenOrphan(files.OrphanInput{Root: root, Give: r.opts.OrphanPtsMaster})
	}
	for _, w := range terms.Warnings[before:] {
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
	if c, ok := h.ctty(t.pid); ok {
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
