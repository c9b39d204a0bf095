// Package restore brings a dumped process back from an images directory.
// Run reads like CRIU's cr_restore_tasks: read and check the images, fork
// a task with the dumped PID from a stub, compute its plan (package plan)
// and make the task run it, then load its registers and let it go. A
// restore that fails kills what it created: no task, no stub, no PID
// stays behind.
package restore

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/cpu"
	"amber/internal/creds"
	"amber/internal/files"
	"amber/internal/image"
	"amber/internal/ipc"
	"amber/internal/log"
	"amber/internal/mem"
	"amber/internal/plan"
	"amber/internal/proc"
	"amber/internal/progress"
	"amber/internal/rlimit"
)

// Options are the restore settings of CRIU's command line.
type Options struct {
	ImagesDir string // -D, --images-dir
	Detach    bool   // -d, --restore-detached
	ShellJob  bool   // -j, --shell-job
	// SkipFileCheck restores files whose size or modification time
	// changed since the dump (--skip-file-check).
	SkipFileCheck bool
	// TCPEstablished restores established TCP connections
	// (--tcp-established).
	TCPEstablished bool
	Log            *log.Logger
}

// Result tells what was restored.
type Result struct {
	Pid int // PID of the restored root task
}

// Run restores the images in opts.ImagesDir. The restored root is a child
// of the calling process: without Detach the caller waits for it.
func Run(opts Options) (Result, error) {
	if opts.Log == nil {
		opts.Log = log.Discard()
	}
	tree, err := load(image.Dir(opts.ImagesDir))
	if err != nil {
		return Result{}, fmt.Errorf("restore: %w", err)
	}
	opts.Log.Infof("images of %d processes read", len(tree.tasks))
	if err := restoreTree(tree, opts); err != nil {
		return Result{}, fmt.Errorf("restore pid %d: %w", tree.root.pid, err)
	}
	return Result{Pid: tree.root.pid}, nil
}

// restoreTree restores every process of the tree, then releases them all
// at once. Phases, as in CRIU's restore: every process is forked from its
// restored parent (the root from amber's stub) and runs its main section;
// its threads are created; then every thread runs its own section, and the
// registers are loaded; then all are released.
func restoreTree(tree *treeImages, opts Options) (err error) {
	if err := checkPidsFree(tree); err != nil {
		return err
	}
	h, err := newHost(opts)
	if err != nil {
		return err
	}
	if h.ttys, err = openTerminals(tree, opts); err != nil {
		return err
	}
	defer h.ttys.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, pinned, err := compel.Pin()
	if err != nil {
		return err
	}
	defer compel.Unpin(orig)
	r := &restorer{cpus: orig, pinned: pinned, opts: opts, host: h, holders: map[uint32]files.Holder{}, pidMax: pidMax(), treePids: tree.pids()}
	h.shared = r.holder
	r.memfdHolders = map[uint32]files.Holder{}
	h.memfdHolder = r.memfdHolder
	defer func() {
		if err != nil {
			r.killAll()
		}
	}()
	segs, err := ipc.RestoreShm(image.Dir(opts.ImagesDir), tree.root.ids.GetIpcNsId())
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			segs.Undo()
		}
	}()
	stub, err := compel.StartStub()
	if err != nil {
		return err
	}
	defer stub.Close()
	root, err := stub.Fork(tree.root.pid)
	if err != nil {
		return forkError(tree.root.pid, err)
	}
	r.created = append(r.created, root)
	if err := r.restoreProcess(root, stub.Insn(), tree.root, &origin{}); err != nil {
		return err
	}
	for _, p := range r.procs {
		if err := r.finish(p); err != nil {
			return fmt.Errorf("pid %d: %w", p.t.pid, err)
		}
	}
	if err := r.endTCPRepair(tree); err != nil {
		return err
	}
	if err := segs.Finish(); err != nil {
		return err
	}
	if err := h.ttys.Finish(); err != nil {
		return err
	}
	return r.releaseAll()
}

// restorer carries one restore's state.
type restorer struct {
	opts    Options
	host    *host
	procs   []*process     // restored so far, parents first
	created []*compel.Task // every task made, to kill on failure
	holders map[uint32]files.Holder
	// memfdHolders are the tasks holding each memfd inode, by inode id.
	memfdHolders map[uint32]files.Holder
	// pidMax and treePids let fill threads take TIDs nobody needs.
	pidMax   int
	treePids map[int]bool
	// cpus is amber's affinity, which restored tasks get back when
	// released; until then they share the tracer's pinned CPU, which
	// makes ptrace round trips short, except while they fill memory.
	cpus, pinned unix.CPUSet
}

// pidMax reads kernel.pid_max, 32768 if it cannot.
func pidMax() int {
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		return 32768
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 32768
	}
	return n
}

// pids lists every PID and TID of the tree.
func (t *treeImages) pids() map[int]bool {
	out := map[int]bool{}
	for _, p := range t.tasks {
		for _, th := range p.threads {
			out[th.tid] = true
		}
	}
	return out
}

// process is a restored process waiting to be released.
type process struct {
	t       *taskImages
	plan    *planned
	threads []*compel.Task // the leader first, as t.threads
}

func (r *restorer) holder(id uint32) (files.Holder, bool) {
	h, ok := r.holders[id]
	return h, ok
}

func (r *restorer) memfdHolder(ino uint32) (files.Holder, bool) {
	h, ok := r.memfdHolders[ino]
	return h, ok
}

// restoreProcess makes task, just forked, into process t: it runs the
// main section, creates the threads and forks the children.
func (r *restorer) restoreProcess(task *compel.Task, insn uint64, t *taskImages, o *origin) error {
	var err error
	if o.current, err = proc.ReadSmaps(task.Pid); err != nil {
		return err
	}
	p, err := planTask(t, r.host, o)
	if err != nil {
		return fmt.Errorf("pid %d: %w", t.pid, err)
	}
	r.opts.Log.Infof("pid %d: planned %d calls", t.pid, len(p.prog.Calls))
	for _, w := range p.warnings {
		r.opts.Log.Warnf("pid %d: %s", t.pid, w)
	}
	if r.opts.Log.Enabled(log.LevelDebug) {
		r.opts.Log.Debugf("pid %d: plan of %d calls, scratch %#x+%#x:\n%s", t.pid, len(p.prog.Calls), p.prog.Base, p.prog.Size, p.prog)
	}
	if err := loadProgram(task, insn, p.prog); err != nil {
		return fmt.Errorf("pid %d: %w", t.pid, err)
	}
	if err := r.runMain(task, p.prog, t); err != nil {
		return fmt.Errorf("pid %d: %w", t.pid, err)
	}
	r.opts.Log.Infof("pid %d: memory, files and process state in place (%d calls)", t.pid, len(p.prog.Calls))
	if p.fds != nil {
		for id, fd := range p.fds.Held {
			if _, ok := r.holders[id]; !ok {
				r.holders[id] = files.Holder{Pid: t.pid, Fd: fd}
			}
		}
	}
	for ino, fd := range p.memfds.Held() {
		if _, ok := r.memfdHolders[ino]; !ok {
			r.memfdHolders[ino] = files.Holder{Pid: t.pid, Fd: fd}
		}
	}
	proc := &process{t: t, plan: p, threads: []*compel.Task{task}}
	r.procs = append(r.procs, proc)
	if err := r.createThreads(proc); err != nil {
		return err
	}
	for _, c := range t.children {
		if err := r.forkChild(proc, c); err != nil {
			return err
		}
	}
	return nil
}

// maxFillWorkers bounds the threads filling one process's memory: beyond
// a few, they wait on the page cache and the page allocator.
const maxFillWorkers = 4

// threadFlags clone a thread of the task.
const threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
	unix.CLONE_THREAD | unix.CLONE_SYSVSEM

// runMain runs the main section of a process, its memory fill (by as many
// threads at once as the plan has fill sections) and the rest.
func (r *restorer) runMain(task *compel.Task, prog *plan.Program, t *taskImages) error {
	if err := runSection(task, prog, sectionMain); err != nil {
		return err
	}
	if err := r.fill(task, prog, t); err != nil {
		return err
	}
	return runSection(task, prog, mem.SectionAfterFill)
}

// fill runs the fill sections: the first in the leader, each other one in
// a helper thread cloned for the purpose (with a TID no dumped task has)
// and ended right after.
func (r *restorer) fill(leader *compel.Task, prog *plan.Program, t *taskImages) (err error) {
	workers := []*compel.Task{leader}
	defer func() {
		for _, w := range workers[1:] {
			if xerr := w.ExitThread(prog.Insn()); xerr != nil && err == nil {
				err = xerr
			}
		}
	}()
	for i := 1; ; i++ {
		if _, ok := prog.Section(mem.FillSection(i)); !ok {
			break
		}
		w, err := r.cloneHelper(leader, prog)
		if err != nil {
			return err
		}
		workers = append(workers, w)
	}
	defer watchFill(leader.Pid, t)()
	if len(workers) > 1 {
		for _, w := range workers {
			if err := w.SetAffinity(r.cpus); err != nil {
				return err
			}
		}
		defer leader.SetAffinity(r.pinned)
	}
	secs := make([]plan.Section, len(workers))
	for i, w := range workers {
		secs[i], _ = prog.Section(mem.FillSection(i))
		if err := w.StartTable(prog.Code(), prog.TableAt(secs[i].Start), secs[i].End-secs[i].Start); err != nil {
			return err
		}
	}
	var first error
	for i, w := range workers {
		if err := sectionError(prog, secs[i], w.WaitTable(prog.TableAt(secs[i].Start), secs[i].End-secs[i].Start)); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// watchFill shows a progress bar of a long fill on a terminal, from the
// bytes the task has read so far (/proc/PID/io rchar), until the returned
// function is called.
func watchFill(pid int, t *taskImages) (stop func()) {
	var total uint64
	for _, e := range t.pagemap {
		if e.GetFlags()&mem.PEPresent != 0 {
			total += mem.NrPages(e) * plan.PageSize
		}
	}
	bar := progress.New(fmt.Sprintf("restore pid %d", pid), total)
	if bar == nil {
		return func() {}
	}
	base := readChars(pid)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				bar.Done()
				return
			case <-tick.C:
				bar.Set(readChars(pid) - base)
			}
		}
	}()
	return func() { close(done); <-finished }
}

// readChars is the rchar field of /proc/PID/io: bytes the process read.
func readChars(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	return 0
}

// cloneHelper clones a short-lived thread into the task, with a TID that
// is free and belongs to no dumped task, so that no PID the restore still
// needs gets taken.
func (r *restorer) cloneHelper(leader *compel.Task, prog *plan.Program) (*compel.Task, error) {
	for tid := r.pidMax - 1; tid > 300; tid-- {
		if r.treePids[tid] {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", tid)); err == nil {
			continue
		}
		t, err := leader.Clone(prog.Insn(), prog.CloneArgs, compel.CloneSpec{Flags: threadFlags, Tid: tid})
		if errors.Is(err, compel.ErrPidInUse) {
			continue
		}
		return t, err
	}
	return nil, errors.New("no free thread id for a filling thread")
}

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
		return makeZombie(task, p.plan.prog, c)
	}
	// The child has its parent's scratch area: its syscall instruction
	// serves until the child maps its own.
	return r.restoreProcess(task, p.plan.prog.Insn(), c, o)
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
	for i, th := range p.t.threads {
		if err := runSection(p.threads[i], prog, threadSection(th.tid)); err != nil {
			return fmt.Errorf("thread %d: %w", th.tid, err)
		}
	}
	leader := p.threads[0]
	if err := runSection(leader, prog, sectionFinal); err != nil {
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
		if err := loadRegisters(p.threads[i], th, xsize); err != nil {
			return err
		}
	}
	return nil
}

// releaseAll lets every restored task run.
func (r *restorer) releaseAll() error {
	for _, p := range r.procs {
		for _, th := range p.threads {
			if err := th.SetAffinity(r.cpus); err != nil {
				return err
			}
			if err := th.Detach(); err != nil {
				return err
			}
		}
	}
	return nil
}

// killAll kills every task created so far. amber becomes a subreaper
// first, so that children orphaned by the kill come back to it to be
// reaped instead of holding their PIDs as zombies.
func (r *restorer) killAll() {
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	for _, t := range r.created {
		unix.Kill(t.Pid, unix.SIGKILL)
	}
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(-1, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			break // ECHILD: all reaped
		}
	}
}

// checkPidsFree names the first PID or TID of the tree already in use.
func checkPidsFree(tree *treeImages) error {
	for _, t := range tree.tasks {
		for _, th := range t.threads {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", th.tid)); err == nil {
				return fmt.Errorf("pid %d is in use by %s", th.tid, describePid(th.tid))
			}
		}
	}
	return nil
}

func forkError(pid int, err error) error {
	if errors.Is(err, compel.ErrPidInUse) {
		return fmt.Errorf("pid %d is in use by %s", pid, describePid(pid))
	}
	return err
}

func newHost(opts Options) (*host, error) {
	lims, err := rlimit.Current()
	if err != nil {
		return nil, err
	}
	st, err := proc.ReadStatus(os.Getpid())
	if err != nil {
		return nil, err
	}
	return &host{
		limits:   lims,
		creds:    creds.Creds{Uid: st.Uid, Gid: st.Gid, Groups: st.Groups},
		amberPid: os.Getpid(),
		workers:  min(runtime.NumCPU(), maxFillWorkers),
		shellJob: opts.ShellJob,
		stat:     os.Stat,
		// Files changed since the dump are taken as they are now.
		skipFileCheck:  opts.SkipFileCheck,
		tcpEstablished: opts.TCPEstablished,
	}, nil
}

// describePid names the process holding pid, for an error message.
func describePid(pid int) string {
	st, err := proc.ReadStatus(pid)
	if err != nil {
		return "another process or thread"
	}
	if st.Tgid != pid {
		return fmt.Sprintf("a thread of %s (pid %d)", st.Name, st.Tgid)
	}
	return fmt.Sprintf("%s (pid %d)", st.Name, pid)
}

// loadProgram maps the scratch area with the `syscall` instruction at
// insn and copies the program into it.
func loadProgram(task *compel.Task, insn uint64, prog *plan.Program) error {
	ret, err := task.SyscallOK(insn, unix.SYS_MMAP, prog.Base, prog.Size,
		unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0)
	if err != nil {
		return fmt.Errorf("map scratch area %#x+%#x: %w", prog.Base, prog.Size, err)
	}
	if ret != prog.Base {
		return fmt.Errorf("map scratch area: got %#x, want %#x", ret, prog.Base)
	}
	return task.WriteMem(prog.Base, prog.Image)
}

// runSection makes task run one section of the program's table.
func runSection(task *compel.Task, prog *plan.Program, name string) error {
	sec, ok := prog.Section(name)
	if !ok {
		return fmt.Errorf("internal error: no section %q", name)
	}
	return sectionError(prog, sec, task.RunTable(prog.Code(), prog.TableAt(sec.Start), sec.End-sec.Start))
}

// sectionError names the planned call that failed in a section.
func sectionError(prog *plan.Program, sec plan.Section, err error) error {
	var te *compel.TableError
	if errors.As(err, &te) && sec.Start+te.Index < len(prog.Calls) {
		return fmt.Errorf("%v: %w", prog.Calls[sec.Start+te.Index], te.Errno)
	}
	return err
}

func xstateSize(task *compel.Task) (int, error) {
	xs, err := task.XState()
	if err != nil {
		return 0, err
	}
	return len(xs), nil
}

// loadRegisters sets the dumped registers. A task frozen inside a system
// call is set up the way the kernel would have resumed it.
func loadRegisters(task *compel.Task, th threadImages, xsize int) error {
	ti := th.core.GetThreadInfo()
	regs, err := cpu.GPRegsFromImage(ti.GetGpregs())
	if err != nil {
		return fmt.Errorf("core-%d.img: %w", th.tid, err)
	}
	restartSyscall(&regs)
	xs, err := cpu.HostLayout().XSaveFromImage(ti.GetFpregs(), xsize)
	if err != nil {
		return fmt.Errorf("core-%d.img: %w", th.tid, err)
	}
	if err := task.SetXState(xs); err != nil {
		return err
	}
	return task.SetRegs(&regs)
}

// Kernel-internal return values of an interrupted system call
// (include/linux/errno.h).
const (
	errRestartSys          = 512
	errRestartNoIntr       = 513
	errRestartNoHand       = 514
	errRestartRestartBlock = 516
)

// negErrno is -e as a system call returns it in rax.
func negErrno(e unix.Errno) uint64 { return uint64(-int64(e)) }

// restartSyscall rewrites the registers of a task frozen inside a system
// call: calls the kernel would restart are re-entered (rip back over the
// 2-byte syscall instruction), and a restart through restart_syscall,
// whose saved state died with the old task, returns EINTR as after a
// signal.
func restartSyscall(r *compel.Regs) {
	if int64(r.Orig_rax) >= 0 {
		switch -int64(r.Rax) {
		case errRestartSys, errRestartNoIntr, errRestartNoHand:
			r.Rax = r.Orig_rax
			r.Rip -= 2
		case errRestartRestartBlock:
			r.Rax = negErrno(unix.EINTR)
		}
	}
	r.Orig_rax = ^uint64(0)
}
