package restore

import (
	"fmt"
	"os"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"golang.org/x/sys/unix"

	"amber/internal/creds"
	"amber/internal/files"
	"amber/internal/mem"
	"amber/internal/plan"
	"amber/internal/proc"
	"amber/internal/rlimit"
	"amber/internal/signals"
)

// host is what planning needs to know of the machine and of the new task
// as it is before the plan runs.
type host struct {
	current  []proc.VMA     // the new task's mappings (a copy of the stub)
	limits   []rlimit.Limit // limits the new task inherited
	creds    creds.Creds    // credentials it inherited (amber's)
	amberPid int
	shellJob bool
	stat     func(string) (os.FileInfo, error)
}

// planned is a task's program and what the planner noticed on the way.
type planned struct {
	prog     *plan.Program
	warnings []string
}

// planTask computes the program a new task runs to become the dumped one.
// It is built twice: the first pass measures the scratch area, the second
// places it where the dumped layout and the stub's both leave a hole.
func planTask(t *taskImages, h *host) (*planned, error) {
	first, err := buildTask(t, h, 0, 0)
	if err != nil {
		return nil, err
	}
	size := first.prog.Size
	base, err := mem.ScratchBase(t.mm.GetVmas(), h.current, size)
	if err != nil {
		return nil, err
	}
	p, err := buildTask(t, h, base, size)
	if err != nil {
		return nil, err
	}
	if p.prog.Size != size {
		return nil, fmt.Errorf("internal error: scratch size changed from %d to %d between passes", size, p.prog.Size)
	}
	return p, nil
}

func buildTask(t *taskImages, h *host, base, size uint64) (*planned, error) {
	bs, be, _, err := mem.VdsoBlock(h.current)
	if err != nil {
		return nil, err
	}
	b := plan.NewBuilder(base, be-bs)
	memIn := &mem.RestoreInput{
		MM: t.mm, Pagemap: t.pagemap, PagesPath: t.pagesPath,
		FilePath: t.files.CheckedPath(h.stat), Current: h.current,
	}
	if err := mem.PlanEmpty(b, memIn, base, base+size); err != nil {
		return nil, err
	}
	b.CloseAll()
	if err := mem.PlanRestore(b, memIn); err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	fdIn := &files.RestoreInput{
		Fds: t.fds, Files: t.files, Pipes: t.pipes, ShellJob: h.shellJob,
		AmberPid: h.amberPid, Stat: h.stat,
	}
	if err := files.PlanFds(b, fdIn); err != nil {
		return nil, fmt.Errorf("files: %w", err)
	}
	if err := files.PlanFS(b, t.fs, t.files); err != nil {
		return nil, err
	}
	p := &planned{}
	if err := planTaskState(b, t, h, p); err != nil {
		return nil, err
	}
	p.prog = b.Finish()
	return p, nil
}

// planTaskState plans signals, thread registrations, identity and limits.
func planTaskState(b *plan.Builder, t *taskImages, h *host, p *planned) error {
	tc, th, ti := t.core.GetTc(), t.core.GetThreadCore(), t.core.GetThreadInfo()
	if err := signals.PlanActions(b, tc.GetSigactions()); err != nil {
		return err
	}
	if err := signals.PlanAltStack(b, th.GetSas()); err != nil {
		return err
	}
	if r := th.GetRseqEntry(); r.GetRseqAbiPointer() != 0 {
		b.Call("register rseq", unix.SYS_RSEQ, r.GetRseqAbiPointer(), uint64(r.GetRseqAbiSize()), 0, uint64(r.GetSignature()))
	}
	b.Call("set clear-child-tid address", unix.SYS_SET_TID_ADDRESS, ti.GetClearTidAddr())
	if th.GetFutexRla() != 0 {
		b.Call("set robust futex list", unix.SYS_SET_ROBUST_LIST, th.GetFutexRla(), uint64(th.GetFutexRlaLen()))
	}
	if sig := th.GetPdeathSig(); sig != 0 {
		b.Call("set parent death signal", unix.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uint64(sig))
	}
	b.Call("set comm "+tc.GetComm(), unix.SYS_PRCTL, unix.PR_SET_NAME, b.String(tc.GetComm()))
	if pers := tc.GetPersonality(); pers != 0 {
		b.Call(fmt.Sprintf("personality %#x", pers), unix.SYS_PERSONALITY, uint64(pers))
	}
	if nice := th.GetSchedNice(); nice != 0 {
		b.Call(fmt.Sprintf("nice %d", nice), unix.SYS_SETPRIORITY, unix.PRIO_PROCESS, 0, uint64(int64(nice)))
	}
	p.warnings = append(p.warnings, rlimit.PlanRestore(b, tc.GetRlimits(), h.limits)...)
	planSession(b, t, h)
	if err := planCreds(b, th, h, p); err != nil {
		return err
	}
	signals.PlanMask(b, tc.GetBlkSigset())
	return nil
}

// planSession puts the task back in its own session or process group when
// it led one. A --shell-job stays in amber's, as with criu.
func planSession(b *plan.Builder, t *taskImages, h *host) {
	pid := t.tree.GetPid()
	switch {
	case h.shellJob:
	case t.tree.GetSid() == pid:
		b.Call("setsid", unix.SYS_SETSID)
	case t.tree.GetPgid() == pid:
		b.Call("setpgid", unix.SYS_SETPGID, 0, 0)
	}
}

// planCreds switches to the dumped identity when it is not amber's. It
// comes last but for the signal mask: after it the task may no longer be
// allowed what the rest of the plan does.
func planCreds(b *plan.Builder, th *criucore.ThreadCoreEntry, h *host, p *planned) error {
	e := th.GetCreds()
	if e == nil {
		return nil
	}
	c, err := creds.FromImage(e)
	if err != nil {
		return fmt.Errorf("creds: %w", err)
	}
	if c.Uid == h.creds.Uid && c.Gid == h.creds.Gid && equalGroups(c.Groups, h.creds.Groups) {
		return nil
	}
	groups := make([]byte, 0, 4*len(c.Groups))
	for _, g := range c.Groups {
		groups = append(groups, byte(g), byte(g>>8), byte(g>>16), byte(g>>24))
	}
	b.Call("setgroups", unix.SYS_SETGROUPS, uint64(len(c.Groups)), b.Bytes(groups))
	b.Call("setresgid", unix.SYS_SETRESGID, uint64(c.Gid[0]), uint64(c.Gid[1]), uint64(c.Gid[2]))
	b.Call("setresuid", unix.SYS_SETRESUID, uint64(c.Uid[0]), uint64(c.Uid[1]), uint64(c.Uid[2]))
	p.warnings = append(p.warnings, "capabilities of a task of another user are not restored yet")
	return nil
}

func equalGroups(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
