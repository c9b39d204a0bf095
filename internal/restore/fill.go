package restore

// Filling memory: the fill sections of a plan run by the leader and by
// short-lived helper threads at once, with a progress bar on a terminal.

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"amber/internal/compel"
	"amber/internal/mem"
	"amber/internal/plan"
	"amber/internal/proc"
	"amber/internal/progress"
)

// maxFillWorkers bounds the threads filling one process's memory: beyond
// a few, they wait on the page cache and the page allocator.
const maxFillWorkers = 4

// runMain runs the main section of a process, its memory fill (by as many
// threads at once as the plan has fill sections) and the rest.
func (r *restorer) runMain(task *compel.Task, prog *plan.Program, t *taskImages) error {
	if err := runSection(task, prog, sectionMain, r.host.users); err != nil {
		return err
	}
	if err := r.fill(task, prog, t); err != nil {
		return err
	}
	return runSection(task, prog, mem.SectionAfterFill, r.host.users)
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
	b, err := proc.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
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
