package restore

import (
	"fmt"
	"os"

	criusa "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-sa"
	"golang.org/x/sys/unix"

	"amber/internal/creds"
	"amber/internal/files"
	"amber/internal/fsroot"
	"amber/internal/idmap"
	"amber/internal/mem"
	"amber/internal/plan"
	"amber/internal/proc"
	"amber/internal/rlimit"
	"amber/internal/signals"
	"amber/internal/taskattr"
	"amber/internal/timers"
)

// host is what planning needs to know of the machine and of the restore
// so far.
type host struct {
	// mountRoot gives files.RestoreInput.MountRoot for a task of a mount
	// namespace, by its id (nil: the tree has none of its own).
	mountRoot func(taskNs uint32) func(mntID int32) string
	limits    []rlimit.Limit // amber's limits, which the root inherits
	creds     creds.Creds    // what every new task starts with (stubCreds)
	amberPid  int
	shellJob  bool
	workers   int // threads that may fill a process's memory at once
	// populate: the kernel has MADV_POPULATE_WRITE, which the fill uses
	// to fault memory in ahead of each preadv.
	populate bool
	// kernelVdso is this kernel's vdso code (mem.KernelVdso), nil if
	// amber has none mapped; treeVdso the dumped kernel's, once a task's
	// pages image gave it (dumpedVdso).
	kernelVdso, treeVdso []byte
	// timerIDs: the kernel has PR_TIMER_CREATE_RESTORE_IDS, which
	// gives a POSIX timer the ID it is asked for.
	timerIDs bool
	stat     func(string) (os.FileInfo, error)
	// root is the tree's root, in which amber looks its paths up (nil:
	// amber's own), once the tree's mounts are made (restoreMounts).
	root *fsroot.Root
	// shared finds a file held by a task restored earlier.
	shared func(fileID uint32) (files.Holder, bool)
	// netnsPid finds a task restored earlier in a network namespace of
	// the tree (files.RestoreInput.NetnsPid).
	netnsPid func(id uint32) (int, bool)
	// lone tells the files only one descriptor table of the tree has.
	lone func(fileID uint32) bool
	// memfdHolder finds a memfd inode held by a task restored earlier.
	memfdHolder func(inodeID uint32) (files.Holder, bool)
	// skipFileCheck restores files changed since the dump.
	skipFileCheck bool
	// warnf logs a warning.
	warnf func(format string, args ...any)
	// ttys are the terminals amber made for the tree (nil: none).
	ttys *files.Terminals
	// tcpEstablished restores established TCP connections.
	tcpEstablished bool
	// tcpClose restores TCP connections closed.
	tcpClose bool
	// extUnixSk connects sockets to external ones by name.
	extUnixSk bool
	// oomFloor is the lowest OOM score adjustment a new task may set.
	oomFloor int32
	// loginuid is amber's audit login UID, which the root of the tree
	// inherits (nil: a kernel without audit).
	loginuid *uint32
	// users are the maps of the tree's user namespace, nil if it is
	// restored in amber's: the ids of the images are the namespace's,
	// and amber turns them into its own where it sets them itself.
	users *idmap.Pair
	// treePids are the PIDs and TIDs of the restored tree.
	treePids map[int]bool
	// deadPidfds are amber's pidfds of dead processes, by file id.
	deadPidfds map[uint32]int
	// lazy leaves private anonymous memory to the lazy-pages daemon.
	lazy bool
	// locks are the file locks each process takes again, by PID.
	locks files.Locks
	// procPid is the PID in amber's pid namespace of a task restored
	// earlier, by its PID in the images (nil: the same).
	procPid func(pid int) int
	// ghosts are the paths of the unlinked files amber made for the
	// tree's mappings, by ghost id (makeGhosts).
	ghosts map[uint32]string
	// inherit are amber's descriptors standing in for files, by key
	// (--inherit-fd).
	inherit map[string]int
	// amberPidfd is the pidfd of amber the root starts with (0: none),
	// inherited from the stub (Stub.HoldPidfd).
	amberPidfd int
	// given are amber's descriptors the stub holds copies of, by the
	// stub's numbers (giveToStub; nil: the tasks take amber's own).
	given map[int]int
	// hostNs are amber's descriptors of its own namespaces, by id in
	// the images (files.OpenHostNs).
	hostNs map[uint32]int
	// hiddenAmber: the tree is in a pid namespace of its own, where
	// amber's PID names no process.
	hiddenAmber bool
	// treeProc is the path through amber's /proc, mounted over the
	// tree's, of the tree's own /proc ("": the tasks see their own).
	treeProc string
}

// fileCheck is how t's files are verified against the dump.
func (h *host) fileCheck(t *taskImages) files.FileCheck {
	c := files.FileCheck{Stat: h.stat, Lstat: h.root.Lstat, Skip: h.skipFileCheck, Warnf: h.warnf}
	if t.extra != nil {
		c.Mtimes = t.extra.Mtimes
	}
	return c
}

// origin is where a new process comes from and what it starts with.
type origin struct {
	current []proc.VMA // its mappings now
	// parent is its restored parent, nil for the root (a copy of the stub).
	parent *planned
	// shareFiles and shareFS: forked with CLONE_FILES or CLONE_FS, it uses
	// its parent's table or fs state and must not rebuild it.
	shareFiles, shareFS bool
	// adopted: forked by a session helper or a sibling, a copy of
	// another process than its dumped parent (parent), whose pages
	// cow-PID.img does not speak of.
	adopted bool
}

// planned is one process's program and what it leaves for its children.
type planned struct {
	t       *taskImages
	prog    *plan.Program
	fds     *files.Restored // nil when the table is the parent's
	inherit map[int]uint32  // descriptors a child forked from it starts with
	limits  []rlimit.Limit  // limits a child forked from it inherits
	memfds  *files.Memfds   // its memfds, held until its final section
	// creds are the credentials each thread has once its section ran,
	// by TID, for the threads whose section changes them.
	creds    map[int]creds.Creds
	warnings []string
	// breaks are the leases to break again once the program ran.
	breaks []files.LeaseBreak
	// lazy are the pages left to the lazy-pages daemon (--lazy-pages).
	lazy *mem.LazyPages
}

// Section names of a process's program.
const (
	sectionMain = "main" // run by the leader first
	// sectionSession is the session step (planSession), run by the leader
	// once it has forked the children born in its session before it.
	sectionSession = "session"
	sectionFinal   = "final" // run by the leader last, when every task is in place
)

// threadSection names the calls thread tid runs once every task is in
// place: its own registrations, identity and signal mask.
func threadSection(tid int) string { return fmt.Sprintf("thread %d", tid) }

// planTask computes the program a new process runs to become the dumped
// one. Its scratch area goes in a hole of the dumped layout and of the
// current one, reserved generously before planning (the plan refers to
// its addresses); the program uses the start of the hole.
func planTask(t *taskImages, h *host, o *origin) (*planned, error) {
	reserve := scratchReserve(t)
	for {
		base, err := mem.ScratchBase(t.mm.GetVmas(), o.current, reserve)
		if err != nil {
			return nil, err
		}
		p, err := buildTask(t, h, o, base, reserve)
		if err != nil {
			return nil, err
		}
		if p.prog.Size <= reserve {
			return p, nil
		}
		reserve = p.prog.Size // a rare task with much more data than foreseen
	}
}

// scratchReserve bounds the scratch area a process needs: the executor,
// the vdso parking place and its data and table grow with its mappings,
// pages runs, descriptors and threads.
func scratchReserve(t *taskImages) uint64 {
	const fixed, perItem = 16 << 20, 512
	n := len(t.mm.GetVmas()) + len(t.pagemap) + len(t.fds) + 16*len(t.threads)
	return (fixed + uint64(n)*perItem + plan.PageSize - 1) &^ (plan.PageSize - 1)
}

func buildTask(t *taskImages, h *host, o *origin, base, size uint64) (*planned, error) {
	bs, be, _, err := mem.VdsoBlock(o.current)
	if err != nil {
		return nil, err
	}
	b := plan.NewBuilder(base, be-bs)
	if h.users != nil {
		b.SetUserNamespace()
	}
	// About a call to map and one to fill or protect each mapping, one
	// per pages run, two to open and place each descriptor.
	b.Grow(2*len(t.mm.GetVmas()) + len(t.pagemap) + 2*len(t.fds) + 16*len(t.threads) + 64)
	p := &planned{t: t}
	var inherited map[int]uint32
	if o.parent != nil {
		inherited = o.parent.inherit
	}
	p.memfds = newMemfds(t, h, files.SafeFd(t.fds, inherited))
	b.StartSection(sectionMain)
	if err := planMemory(b, t, h, o, p, base, size); err != nil {
		return nil, err
	}
	if err := planFiles(b, t, h, o, p); err != nil {
		return nil, err
	}
	if err := mem.PlanSocketMaps(b, t.mm.GetVmas(), t.fdOfFile); err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	if err := planProcessState(b, t, h, o, p); err != nil {
		return nil, err
	}
	b.StartSection(sectionSession)
	planSession(b, t, h)
	for i, th := range t.threads {
		b.StartSection(threadSection(th.tid))
		if i == 0 && !o.shareFS {
			// The leader's section runs once the tree is forked.
			if err := files.PlanRoot(b, t.fs, t.files); err != nil {
				return nil, err
			}
		}
		if err := planThread(b, th, h, p, i); err != nil {
			return nil, fmt.Errorf("thread %d: %w", th.tid, err)
		}
		if err := signals.PlanQueue(b, t.pid, th.tid, th.core.GetThreadCore().GetSignalsP(), false); err != nil {
			return nil, fmt.Errorf("thread %d: %w", th.tid, err)
		}
		// Last: strict mode would leave the thread nothing but read,
		// write, exit and sigreturn.
		t.seccomp.PlanStrict(b, i)
	}
	b.StartSection(sectionFinal)
	// The process's pending signals once every thread has its mask: a
	// thread that does not block one yet would take it from the queue,
	// and amber would queue it again behind the others (compel keep()).
	if err := signals.PlanQueue(b, t.pid, t.pid, t.core.GetTc().GetSignalsS(), true); err != nil {
		return nil, err
	}
	// Timers once every thread exists and has its mask: one may signal
	// a thread of its own (glibc's SIGEV_THREAD helper).
	if err := timers.PlanRestore(b, t.core.GetTc().GetTimers(), h.timerIDs); err != nil {
		return nil, err
	}
	// Guard pages once the children are forked: each installs its own.
	mem.PlanGuards(b, t.guards)
	if !earlySubreaper(t) {
		// Last: orphans of the helpers, which end before, must pass it by.
		taskattr.PlanChildSubreaper(b, t.core.GetTc())
	}
	planForeground(b, t, h)
	p.warnings = append(p.warnings, planDumpable(b, t)...)
	p.memfds.Finish(b)
	files.PlanLate(b, p.fds)
	if p.fds != nil {
		files.PlanOwners(b, p.fds)
		files.ClosePlan(b, p.fds)
	}
	// Last: closing a descriptor of a file drops the process's POSIX
	// locks on it.
	if p.breaks, err = files.PlanLocks(b, t.pid, h.locks[t.pid], t.fds, t.files); err != nil {
		return nil, err
	}
	p.prog = b.Finish()
	return p, nil
}

func planMemory(b *plan.Builder, t *taskImages, h *host, o *origin, p *planned, base, size uint64) error {
	in := &mem.RestoreInput{
		MM: t.mm, Pagemap: t.pagemap, Pages: t.pagesPath.ForTask(), Parents: t.parentLayers(),
		FilePath: t.files.MappedPath(h.fileCheck(t), t.extra, h.ghosts), Current: o.current,
		Workers: h.workers, Populate: h.populate, Pid: t.pid, ProcPid: h.procPid, Shmem: t.sharedOf().anon, Memfd: p.memfds.MapFd,
		Scratch: mem.Run{Start: base, End: base + size}, Lazy: lazyPages(t, h),
		KernelVdso: h.kernelVdso, DumpedVdso: func() ([]byte, error) { return h.dumpedVdso(t) }, Warnings: &p.warnings,
	}
	p.lazy = in.Lazy
	if !o.adopted {
		in.Cow = t.cow
	}
	if o.parent != nil {
		in.Parent = &mem.Parent{MM: o.parent.t.mm, Pagemap: o.parent.t.pagemap}
	}
	if err := mem.PlanEmpty(b, in, base, base+size); err != nil {
		return err
	}
	switch {
	case o.parent == nil && h.amberPidfd > 0:
		b.CloseAllBut(h.amberPidfd) // the files plan closes it
	case o.parent == nil:
		b.CloseAll()
	default:
		b.Inherit(keys(o.parent.inherit))
	}
	if err := mem.PlanRestore(b, in); err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	return nil
}

func planFiles(b *plan.Builder, t *taskImages, h *host, o *origin, p *planned) error {
	if o.shareFiles {
		if len(p.memfds.Fds()) > 0 {
			return fmt.Errorf("pid %d maps a memfd and shares its descriptor table with its parent: not supported yet", t.pid)
		}
		p.inherit = o.parent.inherit
	} else {
		in := &files.RestoreInput{
			Fds: t.fds, Files: t.files, Pipes: t.pipes, PipeSizes: t.pipeSizes, ShellJob: h.shellJob,
			AmberPid: h.amberPid, Stat: h.stat, Lstat: h.root.Lstat, Shared: h.shared,
			Extra: t.extra, SkipFileCheck: h.skipFileCheck, Memfds: p.memfds, Ttys: h.ttyFds(), Stdin: h.givenFd(0),
			TCPEstablished: h.tcpEstablished, TCPClose: h.tcpClose, ExtUnixSk: h.extUnixSk, Lone: h.lone, Warnf: h.warnf, HostGhosts: h.ghosts,
			TreePid: func(pid int) bool { return h.treePids[pid] }, DeadPidfds: h.deadPidfds,
			Inherit: h.inherit, AmberHidden: h.hiddenAmber, NsIDs: t.ids, HostNs: h.hostNs, TreeProc: h.treeProc,
			NetnsPid: h.netnsPid,
		}
		if h.mountRoot != nil {
			in.MountRoot = h.mountRoot(t.ids.GetMntNsId())
		}
		if o.parent != nil {
			in.Inherited = o.parent.inherit
		} else {
			in.AmberPidfd = h.amberPidfd
		}
		r, err := files.PlanFds(b, in)
		if err != nil {
			return fmt.Errorf("files: %w", err)
		}
		p.fds = r
		p.inherit = descriptorsOf(t, r, p.memfds)
	}
	if o.shareFS {
		return nil
	}
	in := files.FSInput{Entry: t.fs, Files: t.files, Extra: t.extra, Stat: h.stat, TreeProc: h.treeProc}
	if p.fds != nil {
		in.Held = p.fds.Held
	}
	return files.PlanFS(b, in)
}

// descriptorsOf lists the descriptors a process has after its files are
// restored, with the file id of each: its dumped table, parked pipe ends
// and its memfd handles (id 0: no file of the dump).
func descriptorsOf(t *taskImages, r *files.Restored, memfds *files.Memfds) map[int]uint32 {
	out := map[int]uint32{}
	for _, f := range t.fds {
		out[int(f.GetFd())] = f.GetId()
		if r.IsLate(int(f.GetFd())) { // a placeholder when children fork
			out[int(f.GetFd())] = 0
		}
	}
	for fd, id := range r.Parked {
		out[fd] = id
	}
	for _, fd := range memfds.Fds() {
		out[fd] = 0
	}
	if r.ProcDir > 0 {
		out[r.ProcDir] = 0
	}
	return out
}

func keys(m map[int]uint32) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// planProcessState plans what the whole process shares: signal
// dispositions, limits, personality, OOM score adjustment, child
// subreaper (when early), audit login UID, THP disabled and membarrier
// registrations.
func planProcessState(b *plan.Builder, t *taskImages, h *host, o *origin, p *planned) error {
	tc := t.core.GetTc()
	var inherited []*criusa.SaEntry
	limits, loginuid := h.limits, h.loginuid
	if o.parent != nil {
		inherited = o.parent.t.core.GetTc().GetSigactions()
		limits = o.parent.limits
		if l := o.parent.t.core.GetTc().Loginuid; l != nil {
			loginuid = l
		}
	}
	if err := signals.PlanActions(b, tc.GetSigactions(), inherited); err != nil {
		return err
	}
	p.warnings = append(p.warnings, rlimit.PlanRestore(b, tc.GetRlimits(), limits)...)
	p.limits = rlimit.Effective(tc.GetRlimits(), limits)
	if pers := tc.GetPersonality(); pers != 0 {
		b.Call(fmt.Sprintf("personality %#x", pers), unix.SYS_PERSONALITY, uint64(pers))
	}
	p.warnings = append(p.warnings, taskattr.PlanOOMScoreAdj(b, tc.OomScoreAdj, h.oomFloor)...)
	if earlySubreaper(t) {
		taskattr.PlanChildSubreaper(b, tc)
	}
	taskattr.PlanLoginuid(b, tc.Loginuid, loginuid)
	taskattr.PlanTHPDisable(b, t.mm)
	if err := taskattr.PlanMembarrier(b, tc); err != nil {
		return fmt.Errorf("core-%d.img: %w", t.pid, err)
	}
	return nil
}

// planSession plans the session step the tree's plan gives the process
// (pstree.Node), in its own section, which runs once the process has
// forked the children that keep the session it had before: setsid, and
// for a session leader its controlling terminal back (planCtty); or
// setpgid(0, 0). Groups of others are joined once every task is made.
func planSession(b *plan.Builder, t *taskImages, h *host) {
	switch n := t.node; {
	case n == nil:
	case n.Setsid:
		b.Call("setsid", unix.SYS_SETSID)
		planCtty(b, t, h)
	case n.OwnGroup:
		b.Call("setpgid", unix.SYS_SETPGID, 0, 0)
	}
}

// earlySubreaper reports whether the process becomes a child subreaper
// before it forks (an orphan comes back to it when a helper ends):
// otherwise it becomes one in its final section.
func earlySubreaper(t *taskImages) bool { return t.node != nil && t.node.EarlySubreaper }

// planThread plans one thread's own state (thread i of its process):
// signal stack, rseq, futex and tid registrations, name, scheduling,
// seccomp filters, credentials, parent death signal and, last, its signal
// mask.
func planThread(b *plan.Builder, t threadImages, h *host, p *planned, i int) error {
	th, ti := t.core.GetThreadCore(), t.core.GetThreadInfo()
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
	if comm := th.GetComm(); comm != "" {
		b.Call("set comm "+comm, unix.SYS_PRCTL, unix.PR_SET_NAME, b.String(comm))
	}
	taskattr.PlanSched(b, th)
	// Before the credentials, which may drop the CAP_SYS_ADMIN installing
	// a filter needs without no_new_privs.
	p.t.seccomp.PlanFilters(b, i)
	if err := planCreds(b, t, h, p); err != nil {
		return err
	}
	// After the credentials: changing the euid, egid, fsuid or fsgid
	// clears it (commit_creds).
	b.Call("set parent death signal", unix.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uint64(th.GetPdeathSig()))
	signals.PlanMask(b, th.GetBlkSigset())
	return nil
}

// dumpedVdso returns the dumped kernel's [vdso] code: as read before
// from another task's pages image, or from t's. One kernel dumped the
// whole tree, and a forked child may have left the vdso's pages to its
// parent's image, with the others it shared with it.
func (h *host) dumpedVdso(t *taskImages) ([]byte, error) {
	if h.treeVdso != nil {
		return h.treeVdso, nil
	}
	code, err := readDumpedVdso(t)
	h.treeVdso = code
	return code, err
}

// readDumpedVdso reads the dumped [vdso] code of t from its pages image,
// nil if that has none.
func readDumpedVdso(t *taskImages) ([]byte, error) {
	if t.mm == nil {
		return nil, nil
	}
	f, err := t.pagesPath.Open()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.pagesPath, err)
	}
	defer f.Close()
	code, err := mem.DumpedVdso(t.mm.GetVmas(), t.pagemap, f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.pagesPath, err)
	}
	return code, nil
}
