package dump

import (
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/log"
	"amber/internal/proc"
)

// frozenProc is one process of the tree, every thread of it frozen.
type frozenProc struct {
	pid     int
	parent  *frozenProc
	stat    proc.Stat
	zombie  bool
	threads []*compel.Task // the leader first; none for a zombie
}

// frozenTree is the dumped tree, parents before children.
type frozenTree struct {
	procs []*frozenProc
	log   *log.Logger
	// pinned is the tracer's CPU: frozen tasks share it while amber
	// drives them, which makes ptrace round trips short; cpus are their
	// own affinities, given back when they are released.
	pinned unix.CPUSet
	cpus   map[int]unix.CPUSet
}

// freezeTree freezes root and all its descendants. Each process is frozen
// whole (every thread, including threads born while freezing) before its
// children are listed, so that no child it forks escapes. On failure every
// task frozen so far is released.
func freezeTree(root int, l *log.Logger, pinned unix.CPUSet) (*frozenTree, error) {
	t := &frozenTree{log: l, pinned: pinned, cpus: map[int]unix.CPUSet{}}
	queue := []*frozenProc{{pid: root}}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if err := t.freezeProcess(p); err != nil {
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
		fresh := 0
		for _, tid := range tids {
			if frozen[tid] {
				continue
			}
			task, err := compel.Seize(tid)
			if errors.Is(err, unix.ESRCH) {
				continue // the thread exited meanwhile
			}
			if err != nil {
				return explainSeize(p.pid, tid, err)
			}
			frozen[tid] = true
			p.threads = append(p.threads, task)
			fresh++
			if cpus, err := task.Affinity(); err == nil && task.SetAffinity(t.pinned) == nil {
				t.cpus[tid] = cpus
			}
		}
		if fresh == 0 {
			break
		}
	}
	slices.SortFunc(p.threads, func(a, b *compel.Task) int { return leaderFirst(p.pid, a.Pid, b.Pid) })
	if len(p.threads) == 0 || p.threads[0].Pid != p.pid {
		return fmt.Errorf("pid %d: its main thread has exited: not supported", p.pid)
	}
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
	if st, serr := proc.ReadStatus(tid); serr == nil && st.TracerPid != 0 {
		return fmt.Errorf("may not trace %s: it is already traced by %s: %w", who, tracerName(st.TracerPid), err)
	}
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("may not trace %s (is it another user's, or is amber not root?): %w", who, err)
	}
	return fmt.Errorf("freeze %s: %w", who, err)
}

func tracerName(pid int) string {
	if st, err := proc.ReadStatus(pid); err == nil {
		return fmt.Sprintf("%s (pid %d)", st.Name, pid)
	}
	return fmt.Sprintf("pid %d", pid)
}

// release lets every frozen task run on as if nothing happened.
func (t *frozenTree) release() error {
	var first error
	for _, p := range t.procs {
		for _, th := range p.threads {
			if cpus, ok := t.cpus[th.Pid]; ok {
				th.SetAffinity(cpus)
			}
			if err := th.Detach(); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

// kill kills every process of the tree and waits until each frozen task
// is dead, so that the tree is gone when dump returns.
func (t *frozenTree) kill() error {
	for _, p := range t.procs {
		if !p.zombie {
			unix.Kill(p.pid, unix.SIGKILL)
		}
	}
	// A dead leader is reported only after its other threads are: wait
	// for them first.
	for _, p := range t.procs {
		for i := len(p.threads) - 1; i >= 0; i-- {
			p.threads[i].WaitDead()
		}
	}
	return nil
}
