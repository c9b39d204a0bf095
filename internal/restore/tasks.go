package restore

// Making tasks: threads cloned with their TIDs, children forked from
// their restored parents, zombies, and the last steps before release.

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/files"
	"amber/internal/plan"
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
		if err := r.cg.MoveThread(task.Pid, th.core.GetThreadCore().GetCgSet(), p.t.core.GetTc().GetCgSet()); err != nil {
			return err
		}
	}
	return nil
}

// forkChild forks child c from its restored parent p and restores it; a
// zombie is made to exit at once with its dumped status.
func (r *restorer) forkChild(p *process, c *taskImages) error {
	spec := compel.CloneSpec{ExitSignal: int(unix.SIGCHLD), Tid: c.pid}
	o := &origin{parent: p.plan}
	if !c.zombie() {
		pids, cids := p.t.ids, c.ids
		if cids.GetVmId() == pids.GetVmId() {
			return fmt.Errorf("pid %d shares its memory with its parent %d (CLONE_VM): not supported yet", c.pid, p.t.pid)
		}
		if o.shareFiles = cids.GetFilesId() == pids.GetFilesId(); o.shareFiles {
			spec.Flags |= unix.CLONE_FILES
		}
		if o.shareFS = cids.GetFsId() == pids.GetFsId(); o.shareFS {
			spec.Flags |= unix.CLONE_FS
		}
	}
	task, err := p.threads[0].Clone(p.plan.prog.Insn(), p.plan.prog.CloneArgs, spec)
	if err != nil {
		return forkError(c.pid, err)
	}
	r.created = append(r.created, task)
	if c.zombie() {
		if err := r.joinZombieGroup(p, task, c); err != nil {
			return fmt.Errorf("zombie %d: %w", c.pid, err)
		}
		return makeZombie(task, p.plan.prog, c)
	}
	if err := r.enterMountNs(task, p.plan.prog.Insn(), p, c); err != nil {
		return err
	}
	// The child has its parent's scratch area: its syscall instruction
	// serves until the child maps its own.
	return r.restoreProcess(task, p.plan.prog.Insn(), c, o)
}

// joinZombieGroup puts the new task for zombie c in its dumped process
// group before it ends. A group none of the tree leads any more (its
// leader exited and was reaped, the zombie lives on in it) is made by a
// helper of its parent's, a process with the group's ID that leads it
// for the moment, then exits without a signal to the parent, which
// reaps it.
func (r *restorer) joinZombieGroup(p *process, task *compel.Task, c *taskImages) error {
	pgid, insn := c.tree.GetPgid(), p.plan.prog.Insn()
	switch {
	case pgid == p.t.tree.GetPgid():
		return nil // its parent's, which it has
	case int(pgid) == c.pid:
		_, err := task.SyscallOK(insn, unix.SYS_SETPGID, 0, 0)
		return err
	}
	_, err := task.SyscallOK(insn, unix.SYS_SETPGID, 0, uint64(pgid))
	if err == nil || !errors.Is(err, unix.EPERM) {
		return err // joined, or a failure a helper cannot fix
	}
	parent := p.threads[0]
	helper, err := parent.Clone(insn, p.plan.prog.CloneArgs, compel.CloneSpec{Tid: int(pgid)})
	if err != nil {
		return fmt.Errorf("helper for process group %d: %w", pgid, forkError(int(pgid), err))
	}
	r.created = append(r.created, helper)
	if _, err := helper.SyscallOK(insn, unix.SYS_SETPGID, 0, 0); err != nil {
		return fmt.Errorf("helper for process group %d: %w", pgid, err)
	}
	if _, err := task.SyscallOK(insn, unix.SYS_SETPGID, 0, uint64(pgid)); err != nil {
		return fmt.Errorf("join process group %d: %w", pgid, err)
	}
	if err := helper.Exit(insn, 0); err != nil {
		return err
	}
	if _, err := parent.SyscallOK(insn, unix.SYS_WAIT4, uint64(pgid), 0, unix.WALL, 0); err != nil {
		return fmt.Errorf("reap helper %d: %w", pgid, err)
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
		if err := runSection(p.threads[i], prog, threadSection(th.tid)); err != nil {
			return fmt.Errorf("thread %d: %w", th.tid, err)
		}
		if err := checkCreds(p.threads[0].Pid, p.threads[i].Pid, th.tid, p.plan); err != nil {
			return fmt.Errorf("thread %d: %w", th.tid, err)
		}
	}
	leader := p.threads[0]
	r.opts.Log.Debugf("pid %d: thread sections done", p.t.pid)
	if err := runSection(leader, prog, sectionFinal); err != nil {
		return err
	}
	if err := breakLeases(leader, prog, p.plan.breaks); err != nil {
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
func breakLeases(leader *compel.Task, prog *plan.Program, breaks []files.LeaseBreak) error {
	for _, br := range breaks {
		if err := br.Break(); err != nil {
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
