package dump

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/log"
	"amber/internal/mem"
	"amber/internal/proc"
)

// frozenProc is one process of the tree, every thread of it frozen.
type frozenProc struct {
	pid     int
	parent  *frozenProc
	stat    proc.Stat
	zombie  bool
	threads []*compel.Task // the leader first; none for a zombie
	// par is the parasite in the process, from its collection until the
	// tree is released or killed.
	par *compel.Parasite
}

// parasite runs calls in the leader of p, nil before it is infected.
func (p *frozenProc) parasite() mem.Parasite {
	if p.par == nil {
		return nil
	}
	return p.par.Leader()
}

// frozenTree is the dumped tree, parents before children.
type frozenTree struct {
	procs []*frozenProc
	log   *log.Logger
	// timeout bounds each wait for a task of the tree.
	timeout time.Duration
	// pinned is the tracer's CPU: infected tasks share it while amber
	// drives them, which makes ptrace round trips short.
	pinned unix.CPUSet
	// gadgets are the instructions the parasites found in the tree's
	// libraries.
	gadgets *compel.GadgetCache
	// seized are threads seized already, by TID, while their cgroup was
	// frozen (seizeFrozen): they are only waited for.
	seized map[int]*compel.Task
	// layouts carries the smaps of the dumps of a chain (Options.Layouts);
	// reuse lets collect take them where maps shows no change.
	layouts *Layouts
	reuse   bool
}

// freezeTree freezes root and all its descendants. Each process is frozen
// whole (every thread, including threads born while freezing) before its
// children are listed, so that no child it forks escapes. On failure every
// task frozen so far is released.
// seized are threads seized already (seizeFrozen); those left unused
// are detached.
func freezeTree(root int, l *log.Logger, pinned unix.CPUSet, timeout time.Duration, seized map[int]*compel.Task) (*frozenTree, error) {
	t := &frozenTree{log: l, pinned: pinned, timeout: timeout, gadgets: compel.NewGadgetCache(), seized: seized}
	defer t.detachSeized()
	queue := []*frozenProc{{pid: root}}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		err := t.freezeProcess(p)
		if errors.Is(err, errExited) && p.parent != nil {
			continue
		}
		if err != nil {
			t.release()
			return nil, err
		}
		t.procs = append(t.procs, p)
		if p.zombie {
			continue
		}
		kids, err := proc.Children(p.pid)
		if err != nil {
			t.release()
			return nil, err
		}
		for _, k := range kids {
			queue = append(queue, &frozenProc{pid: k, parent: p})
		}
	}
	return t, nil
}

// freezeProcess seizes every thread of p until no new one appears: a
// thread not yet frozen may have created another meanwhile.
func (t *frozenTree) freezeProcess(p *frozenProc) error {
	var err error
	if p.stat, err = proc.ReadStat(p.pid); err != nil {
		return fmt.Errorf("pid %d: %w", p.pid, err)
	}
	if p.stat.State == 'Z' {
		p.zombie = true
		return nil
	}
	frozen := map[int]bool{}
	for {
		tids, err := proc.Threads(p.pid)
		if err != nil {
			return fmt.Errorf("pid %d: %w", p.pid, err)
		}
		// Every new thread is asked to stop first, then waited for: they
		// stop side by side.
		var fresh []*compel.Task
		for _, tid := range tids {
			if frozen[tid] {
				continue
			}
			task, err := t.attach(tid)
			if errors.Is(err, unix.ESRCH) || (errors.Is(err, unix.EPERM) && exited(tid)) {
				continue // the thread exited meanwhile (a dead one cannot be seized)
			}
			if err != nil {
				return explainSeize(p.pid, tid, err)
			}
			frozen[tid] = true
			fresh = append(fresh, task)
		}
		for i, task := range fresh {
			err := task.WaitFrozen()
			if errors.Is(err, compel.ErrGone) {
				continue // it was exiting: a thread less, or a zombie (below)
			}
			if err != nil {
				for _, other := range fresh[i+1:] {
					other.Detach()
				}
				return explainSeize(p.pid, task.Pid, err)
			}
			p.threads = append(p.threads, task)
		}
		if len(fresh) == 0 {
			break
		}
	}
	if len(p.threads) == 0 {
		return t.exitedMeanwhile(p)
	}
	slices.SortFunc(p.threads, func(a, b *compel.Task) int { return leaderFirst(p.pid, a.Pid, b.Pid) })
	if p.threads[0].Pid != p.pid {
		return fmt.Errorf("pid %d: its main thread has exited: not supported", p.pid)
	}
	return nil
}

// attach seizes thread tid and asks it to stop, unless it is seized
// already.
func (t *frozenTree) attach(tid int) (*compel.Task, error) {
	if task, ok := t.seized[tid]; ok {
		delete(t.seized, tid)
		return task, nil
	}
	return compel.Attach(tid, t.timeout)
}

// detachSeized lets go of the threads seized beforehand that are not
// in the tree (any more), once they stopped: their cgroup is thawed.
func (t *frozenTree) detachSeized() {
	for tid, task := range t.seized {
		if task.WaitFrozen() == nil {
			task.Detach()
		}
		delete(t.seized, tid)
	}
}

// exited tells whether thread tid is dead: a zombie, or gone.
func exited(tid int) bool {
	st, err := proc.ReadStat(tid)
	return errors.Is(err, os.ErrNotExist) || (err == nil && (st.State == 'Z' || st.State == 'X'))
}

// errExited marks a process that exited, and was reaped, while amber
// froze it: it is no longer part of the tree.
var errExited = errors.New("exited while the tree was frozen")

// exitedMeanwhile handles a process whose every thread exited between
// being seized and stopping: the process is then a zombie, which its
// frozen parent cannot reap, and is dumped as one, as CRIU does; one
// reaped already (its parent ignores SIGCHLD) is left out.
func (t *frozenTree) exitedMeanwhile(p *frozenProc) error {
	st, err := proc.ReadStat(p.pid)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pid %d: %w", p.pid, errExited)
	}
	if err != nil {
		return fmt.Errorf("pid %d: %w", p.pid, err)
	}
	if st.State != 'Z' {
		return fmt.Errorf("pid %d: no thread could be frozen (state %c)", p.pid, st.State)
	}
	p.stat, p.zombie = st, true
	t.log.Infof("pid %d exited while the tree was frozen: dumped as a zombie", p.pid)
	return nil
}

func leaderFirst(pid, a, b int) int {
	switch {
	case a == pid:
		return -1
	case b == pid:
		return 1
	}
	return a - b
}

func explainSeize(pid, tid int, err error) error {
	who := fmt.Sprintf("pid %d", pid)
	if tid != pid {
		who = fmt.Sprintf("thread %d of pid %d", tid, pid)
	}
	if errors.Is(err, compel.ErrTimeout) {
		return fmt.Errorf("freeze %s: it did not stop (%s): %w", who, sleepState(pid, tid), err)
	}
	if st, serr := proc.ReadStatus(tid); serr == nil && st.TracerPid != 0 && st.TracerPid != os.Getpid() {
		return fmt.Errorf("may not trace %s: it is already traced by %s: %w", who, tracerName(st.TracerPid), err)
	}
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("may not trace %s (is it another user's, or is amber not root?): %w", who, err)
	}
	return fmt.Errorf("freeze %s: %w", who, err)
}

// sleepState says what a task that does not stop is doing, for an error
// message: its state and the kernel function it sleeps in.
func sleepState(pid, tid int) string {
	st, err := proc.ReadTaskStat(pid, tid)
	if err != nil {
		return "gone"
	}
	wchan, _ := proc.ReadFile(fmt.Sprintf("/proc/%d/task/%d/wchan", pid, tid))
	if st.State == 'D' {
		return fmt.Sprintf("in uninterruptible sleep in %s", wchan)
	}
	return fmt.Sprintf("state %c in %s", st.State, wchan)
}

func tracerName(pid int) string {
	if st, err := proc.ReadStatus(pid); err == nil {
		return fmt.Sprintf("%s (pid %d)", st.Name, pid)
	}
	return fmt.Sprintf("pid %d", pid)
}

// release takes the parasites out and lets every frozen task run on as if
// nothing happened.
func (t *frozenTree) release() error {
	var errs []error
	for _, p := range t.procs {
		if p.par != nil {
			if err := p.par.Cure(); err != nil {
				errs = append(errs, fmt.Errorf("pid %d: %w", p.pid, err))
			}
			p.par = nil
		}
		for _, th := range p.threads {
			errs = append(errs, th.Detach())
		}
	}
	return errors.Join(errs...)
}

// kill kills every process of the tree and waits until each frozen task
// is dead, so that the tree is gone when dump returns. Their parasites
// die with them.
func (t *frozenTree) kill() error {
	var tasks []*compel.Task
	for _, p := range t.procs {
		tasks = append(tasks, p.threads...)
	}
	return compel.KillAll(tasks, t.timeout)
}

// refuseIOUring refuses a process with an io_uring, naming its
// descriptor or mapping: amber cannot dump one, and its kernel threads
// (iou-sqp-*, iou-wrk-*) never run code amber injects. It is looked for
// once such a thread is found.
func refuseIOUring(pid int) error {
	fds, err := proc.Fds(pid)
	if err != nil {
		return err
	}
	for _, fd := range fds {
		if target, err := proc.FdPath(pid, fd); err == nil && target == ioUringInode {
			return fmt.Errorf("fd %d is an io_uring: not supported", fd)
		}
	}
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		return err
	}
	for _, m := range maps {
		if m.Path == ioUringInode {
			return fmt.Errorf("an io_uring is mapped at %#x-%#x: not supported", m.Start, m.End)
		}
	}
	return nil
}

// ioUringInode is what /proc shows for an io_uring's file.
const ioUringInode = "anon_inode:[io_uring]"

// Task flags of /proc/PID/stat (include/linux/sched.h): threads the
// kernel runs for a process (io_uring workers, vhost), which never return
// to user space to run what amber injects.
const (
	pfIOWorker   = 0x10
	pfKthread    = 0x200000
	pfUserWorker = 0x4000
)

// hasTask tells a PID or TID of the tree.
func (t *frozenTree) hasTask(pid int) bool {
	for _, p := range t.procs {
		if p.pid == pid {
			return true
		}
		for _, th := range p.threads {
			if th.Pid == pid {
				return true
			}
		}
	}
	return false
}

// pids are the PIDs of the tree's live processes.
func (t *frozenTree) pids() map[int]bool {
	out := map[int]bool{}
	for _, p := range t.procs {
		if !p.zombie {
			out[p.pid] = true
		}
	}
	return out
}

// livePids lists the PIDs of the tree's live processes, parents first.
func (t *frozenTree) livePids() []int {
	var out []int
	for _, p := range t.procs {
		if !p.zombie {
			out = append(out, p.pid)
		}
	}
	return out
}
