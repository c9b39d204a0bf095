package restore

// Making tasks: threads cloned with their TIDs, children forked from
// their restored parents (or the helpers of the tree's plan), zombies and
// helpers, groups joined, and the last steps before release.

import (
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/files"
	"amber/internal/fsroot"
	"amber/internal/plan"
	ptree "amber/internal/pstree"
)

// threadFlags clone a thread of the task.
const threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
	unix.CLONE_THREAD | unix.CLONE_SYSVSEM

// createThreads clones every thread but the leader with its TID.
func (r *restorer) createThreads(p *process) error {
	leader := p.threads[0]
	for _, th := range p.t.threads[1:] {
		task, err := leader.Clone(p.plan.prog.Insn(), p.plan.prog.CloneArgs, compel.CloneSpec{Flags: threadFlags, Tid: th.tid})
		if err != nil {
			return forkError(th.tid, err)
		}
		r.created = append(r.created, task)
		p.threads = append(p.threads, task)
		if err := r.cg.MoveThread(task.Pid, th.core.GetThreadCore().GetCgSet(), cgSet(p.t.core)); err != nil {
			return err
		}
	}
	return nil
}

// maker is a task that forks others: a restored process, or a zombie or
// helper still to end, which runs the code of the restored process it
// is a copy of.
type maker struct {
	task *compel.Task
	src  *process // the restored process whose memory it has
}

func (m maker) insn() uint64 { return m.src.plan.prog.Insn() }
func (m maker) args() uint64 { return m.src.plan.prog.CloneArgs }

// ending is a helper or a zombie made, which ends once every task is
// made and in its group.
type ending struct {
	maker
	by  maker // its creator, which reaps a helper
	tid int   // its PID in its pid namespace
}

// forkAll forks what node n of the plan forks, as m: the children born
// in the session it had before, then its session step, then the rest.
func (r *restorer) forkAll(m maker, n *ptree.Node, step func() error) error {
	for _, c := range n.Early {
		if err := r.create(m, c); err != nil {
			return err
		}
	}
	if err := step(); err != nil {
		return fmt.Errorf("pid %d: %w", n.Pid, err)
	}
	for _, c := range n.Late {
		if err := r.create(m, c); err != nil {
			return err
		}
	}
	return nil
}

// create makes task n of the plan, forked by m: a process restored to
// run, or a zombie or helper, which takes its session step and forks
// what it forks, and ends once every task is made (endHelpers,
// endZombies).
func (r *restorer) create(m maker, n *ptree.Node) error {
	if n.Kind == ptree.Live {
		return r.forkChild(m, r.tree.byPid[n.Pid])
	}
	spec := compel.CloneSpec{Tid: n.Pid}
	if n.Kind == ptree.Zombie {
		spec.ExitSignal = int(unix.SIGCHLD)
	}
	task, err := r.cloneTask(m, spec)
	if err != nil {
		return fmt.Errorf("%v %d: %w", n.Kind, n.Pid, err)
	}
	r.created = append(r.created, task)
	self := maker{task: task, src: m.src}
	r.makers[n] = self
	r.endings[n] = ending{maker: self, by: m, tid: spec.Tid}
	return r.forkAll(self, n, func() error { return sessionStep(self, n) })
}

// cloneTask clones a zombie or helper from m; a helper without a PID of
// its own (spec.Tid 0) takes a free one that no task of the tree needs,
// which spec gets.
func (r *restorer) cloneTask(m maker, spec compel.CloneSpec) (*compel.Task, error) {
	if spec.Tid != 0 {
		task, err := m.task.Clone(m.insn(), m.args(), spec)
		return task, forkError(spec.Tid, err)
	}
	for tid := r.pidMax - 1; tid > 300; tid-- {
		if r.treePids[tid] {
			continue
		}
		spec.Tid = tid
		task, err := m.task.Clone(m.insn(), m.args(), spec)
		if errors.Is(err, compel.ErrPidInUse) {
			continue
		}
		return task, err
	}
	return nil, errors.New("no free pid for a helper")
}

// sessionStep runs the session step of a zombie or helper, which have no
// program of their own.
func sessionStep(m maker, n *ptree.Node) error {
	var err error
	switch {
	case n.Setsid:
		_, err = m.task.SyscallOK(m.insn(), unix.SYS_SETSID)
	case n.OwnGroup:
		_, err = m.task.SyscallOK(m.insn(), unix.SYS_SETPGID, 0, 0)
	}
	return err
}

// forkChild forks process c from m, its restored parent, the session
// helper that adopts it or its sibling, and restores it.
func (r *restorer) forkChild(m maker, c *taskImages) error {
	spec := compel.CloneSpec{ExitSignal: int(unix.SIGCHLD), Tid: c.pid}
	o := &origin{parent: m.src.plan, adopted: c.node.Adopted()}
	pids, cids := m.src.t.ids, c.ids
	if o.adopted {
		pids = r.tree.byPid[int(c.tree.GetPpid())].ids
		if cids.GetVmId() == pids.GetVmId() || cids.GetFilesId() == pids.GetFilesId() || cids.GetFsId() == pids.GetFsId() {
			return fmt.Errorf("pid %d shares its memory, descriptors or fs state with its parent %d, which does not fork it here: not supported", c.pid, c.tree.GetPpid())
		}
		if c.node.Sibling {
			// The parent's child, forked by its sibling: the exit
			// signal is the sibling's.
			spec.Flags, spec.ExitSignal = unix.CLONE_PARENT, 0
		}
	} else {
		if cids.GetVmId() == pids.GetVmId() {
			return fmt.Errorf("pid %d shares its memory with its parent %d (CLONE_VM): not supported yet", c.pid, m.src.t.pid)
		}
		if o.shareFiles = cids.GetFilesId() == pids.GetFilesId(); o.shareFiles {
			spec.Flags |= unix.CLONE_FILES
		}
		if o.shareFS = cids.GetFsId() == pids.GetFsId(); o.shareFS {
			spec.Flags |= unix.CLONE_FS
		}
	}
	task, err := m.task.Clone(m.insn(), m.args(), spec)
	if err != nil {
		return forkError(c.pid, err)
	}
	r.created = append(r.created, task)
	if err := r.enterMountNs(task, m.insn(), m.src, c); err != nil {
		return err
	}
	if err := r.enterNetNs(task, m.insn(), m.src, c); err != nil {
		return err
	}
	// The child has its source's scratch area: its syscall instruction
	// serves until the child maps its own.
	return r.restoreProcess(task, m.insn(), c, o)
}

// joinGroups runs the plan's setpgid calls, once every task is made.
func (r *restorer) joinGroups() error {
	for _, s := range r.tree.plan.Groups {
		m := r.makers[s.Node]
		if _, err := m.task.SyscallOK(m.insn(), unix.SYS_SETPGID, 0, uint64(s.Pgid)); err != nil {
			return fmt.Errorf("pid %d: join process group %d: %w", s.Node.Pid, s.Pgid, err)
		}
	}
	return nil
}

// deadHelper is the helper of a dead PID (pstree.DeadHelper) made.
type deadHelper struct {
	task *compel.Task
	pid  int    // its PID in its pid namespace
	insn uint64 // a syscall instruction in it: the stub's
}

// forkDeadHelpers makes the helpers of the plan's dead PIDs: root, just
// forked from stub and still a copy of it, forks each with its PID, in
// the tree's pid namespace, before any task opens a file under its
// /proc/PID. They end first of the helpers (endHelpers).
func (r *restorer) forkDeadHelpers(root *compel.Task, stub *compel.Stub) error {
	for _, n := range r.tree.plan.Dead {
		task, err := stub.ForkFrom(root, n.Pid)
		if err != nil {
			return fmt.Errorf("%v %d: %w", n.Kind, n.Pid, forkError(n.Pid, err))
		}
		r.created = append(r.created, task)
		r.dead = append(r.dead, deadHelper{task: task, pid: n.Pid, insn: stub.Insn()})
		r.opts.Log.Debugf("%v %d made (pid %d in amber's namespace)", n.Kind, n.Pid, task.Pid)
	}
	return nil
}

// endHelpers ends every helper, which its creator reaps: the orphans a
// session helper forked go to their reaper. The helpers of dead PIDs go
// first, reaped by the root: every task has opened its files by now.
func (r *restorer) endHelpers() error {
	for _, d := range r.dead {
		if err := d.task.Exit(d.insn, 0); err != nil {
			return fmt.Errorf("%v %d: %w", ptree.DeadHelper, d.pid, err)
		}
		root := r.makers[r.tree.plan.Root]
		if _, err := root.task.SyscallOK(root.insn(), unix.SYS_WAIT4, uint64(d.pid), 0, unix.WALL, 0); err != nil {
			return fmt.Errorf("reap %v %d: %w", ptree.DeadHelper, d.pid, err)
		}
		r.created = slices.DeleteFunc(r.created, func(t *compel.Task) bool { return t == d.task })
	}
	r.dead = nil
	for _, n := range r.tree.plan.Helpers {
		e := r.endings[n]
		if err := e.task.Exit(e.insn(), 0); err != nil {
			return fmt.Errorf("%v %d: %w", n.Kind, e.tid, err)
		}
		if _, err := e.by.task.SyscallOK(e.by.insn(), unix.SYS_WAIT4, uint64(e.tid), 0, unix.WALL, 0); err != nil {
			return fmt.Errorf("reap %v %d: %w", n.Kind, e.tid, err)
		}
		// Reaped: its PID may be anyone's now.
		r.created = slices.DeleteFunc(r.created, func(t *compel.Task) bool { return t == e.task })
	}
	return nil
}

// endZombies makes every zombie end the way it ended.
func (r *restorer) endZombies() error {
	for _, n := range r.tree.plan.Zombies {
		e := r.endings[n]
		if err := makeZombie(e.task, e.src.plan.prog, r.tree.byPid[n.Pid]); err != nil {
			return fmt.Errorf("zombie %d: %w", n.Pid, err)
		}
	}
	return nil
}

// makeZombie ends a new task the way the dumped zombie ended.
func makeZombie(task *compel.Task, prog *plan.Program, c *taskImages) error {
	ws := unix.WaitStatus(c.core.GetTc().GetExitCode())
	switch {
	case ws.Signaled() && ws.Signal() == unix.SIGKILL:
		return task.KillWith(unix.SIGKILL)
	case ws.Signaled():
		// The child inherited its parent's handlers: let the signal's
		// default action end it, without leaving a core file.
		var dfl [32]byte
		if err := task.WriteMem(prog.CloneArgs, dfl[:]); err != nil {
			return err
		}
		if _, err := task.SyscallOK(prog.Insn(), unix.SYS_RT_SIGACTION, uint64(ws.Signal()), prog.CloneArgs, 0, 8); err != nil {
			return fmt.Errorf("zombie %d: %w", c.pid, err)
		}
		if _, err := task.SyscallOK(prog.Insn(), unix.SYS_PRLIMIT64, 0, unix.RLIMIT_CORE, prog.CloneArgs, 0); err != nil {
			return fmt.Errorf("zombie %d: %w", c.pid, err)
		}
		return task.KillWith(ws.Signal())
	default:
		return task.Exit(prog.Insn(), ws.ExitStatus())
	}
}

// finish runs every thread's own section and the final one, unmaps the
// scratch area and loads the registers.
func (r *restorer) finish(p *process) error {
	prog := p.plan.prog
	if err := r.handOver(p); err != nil {
		return err
	}
	if p.t.seccomp.Active() {
		// The filters the sections install must not filter what amber
		// makes the tasks do until they are released.
		for _, th := range p.threads {
			if err := th.SuspendSeccomp(); err != nil {
				return err
			}
		}
	}
	for i, th := range p.t.threads {
		if err := runSection(p.threads[i], prog, threadSection(th.tid), r.host.users); err != nil {
			return fmt.Errorf("thread %d: %w", th.tid, err)
		}
		if err := checkCreds(p.threads[0].Pid, p.threads[i].Pid, th.tid, p.plan, r.host.users); err != nil {
			return fmt.Errorf("thread %d: %w", th.tid, err)
		}
	}
	leader := p.threads[0]
	r.opts.Log.Debugf("pid %d: thread sections done", p.t.pid)
	if err := runSection(leader, prog, sectionFinal, r.host.users); err != nil {
		return err
	}
	if err := breakLeases(leader, prog, p.plan.breaks, r.host.root); err != nil {
		return err
	}
	if _, err := leader.SyscallOK(prog.Insn(), unix.SYS_MUNMAP, prog.Base, prog.Size); err != nil {
		return fmt.Errorf("unmap scratch area: %w", err)
	}
	xsize, err := xstateSize(leader)
	if err != nil {
		return err
	}
	for i, th := range p.t.threads {
		if err := loadRegisters(p.threads[i], th, xsize, r.xsave); err != nil {
			return err
		}
	}
	return nil
}

// breakLeases breaks again the leases that were being broken at the
// dump, which the final section took as they were before, and takes
// back from the process the signal each break sends it: it had that one
// when the break began.
func breakLeases(leader *compel.Task, prog *plan.Program, breaks []files.LeaseBreak, root *fsroot.Root) error {
	for _, br := range breaks {
		if err := br.Break(root); err != nil {
			return err
		}
		sig, err := leader.SyscallOK(prog.Insn(), unix.SYS_RT_SIGTIMEDWAIT, br.Set, 0, br.Timeout, 8)
		if err != nil {
			return fmt.Errorf("fd %d: the signal of the lease break: %w", br.Fd, err)
		}
		if int(sig) != br.Signum {
			return fmt.Errorf("fd %d: the lease break sent signal %d, want %d", br.Fd, sig, br.Signum)
		}
		if br.Owner == 0 {
			continue
		}
		if _, err := leader.SyscallOK(prog.Insn(), unix.SYS_FCNTL, uint64(br.Fd), unix.F_SETOWN_EX, br.Owner); err != nil {
			return fmt.Errorf("fd %d: give the file its owner back after the lease break: %w", br.Fd, err)
		}
	}
	return nil
}
