package compel

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultTimeout bounds each wait for a traced task, as CRIU's --timeout
// does: a task that does not stop or run injected code in time (one in
// uninterruptible sleep, a kernel thread of the process) makes the
// operation fail instead of hanging.
const DefaultTimeout = 10 * time.Second

// ErrTimeout is returned when a traced task did not reach the state amber
// waited for in time.
var ErrTimeout = errors.New("timed out")

// waitLimit is how long a wait for t may take: DefaultTimeout unless set.
func (t *Task) waitLimit() time.Duration {
	if t.Timeout == 0 {
		return DefaultTimeout
	}
	return t.Timeout
}

// wait4 waits, at most limit, for the next state change of pid reported
// to amber (pid -1: of any tracee or child). Any thread of a tracer may
// wait for its tracees: a goroutine blocks in wait4 while the caller waits
// for it or for the deadline, so a task that never stops costs a blocked
// goroutine, not a hung amber.
func wait4(pid int, limit time.Duration) (int, unix.WaitStatus, error) {
	var ws unix.WaitStatus
	if got, err := unix.Wait4(pid, &ws, unix.WALL|unix.WNOHANG, nil); err != nil || got > 0 {
		return got, ws, err
	}
	type result struct {
		got int
		ws  unix.WaitStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		for {
			r.got, r.err = unix.Wait4(pid, &r.ws, unix.WALL, nil)
			if r.err != unix.EINTR {
				break
			}
		}
		done <- r
	}()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.got, r.ws, r.err
	case <-timer.C:
		return 0, ws, ErrTimeout
	}
}

// wait4 waits, at most for the task's timeout, for its next state change.
func (t *Task) wait4() (int, unix.WaitStatus, error) {
	if t.owned {
		return waitOwned(t.Pid, t.waitLimit())
	}
	return wait4(t.Pid, t.waitLimit())
}

// waitOwned waits in wait4 itself, the quickest way, for a task amber
// made: should it not change state within limit, a timer looks at whether
// it still works (progress: CPU time, page faults, resident pages, bytes
// read and written changed over another limit), which a fill of
// gigabytes from a slow disk does for longer than limit; one that does
// not is killed, which ends the wait. A dead leader is reported only once
// its other threads are reaped, and those amber traces only amber reaps:
// the timer reaps them too, or a process that died in the middle of a
// section (killed from outside, say) would hold the wait forever.
func waitOwned(pid int, limit time.Duration) (int, unix.WaitStatus, error) {
	var ws unix.WaitStatus
	var late atomic.Bool
	var (
		mu    sync.Mutex // the timer and done, between the wait and the callback
		timer *time.Timer
		done  bool // the wait is over: the callback must neither re-arm nor kill
		last  string
	)
	timer = time.AfterFunc(limit, func() {
		mu.Lock()
		if done {
			mu.Unlock()
			return
		}
		if now := progress(pid); now != "" && now != last {
			last = now
			timer.Reset(limit)
			mu.Unlock()
			return
		}
		late.Store(true)
		mu.Unlock()
		unix.Kill(pid, unix.SIGKILL)
		reapThreads(pid)
	})
	defer func() {
		mu.Lock()
		done = true
		timer.Stop()
		mu.Unlock()
	}()
	for {
		got, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if late.Load() {
			return got, ws, fmt.Errorf("killed after %v without progress: %w", limit, ErrTimeout)
		}
		return got, ws, err
	}
}

// progress is what shows that pid works: its CPU time, page faults and
// resident pages (/proc/PID/stat) and its I/O counts (/proc/PID/io);
// empty if they cannot be read.
func progress(pid int) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return ""
	}
	// Fields from the state on: minflt, majflt, utime, stime, rss.
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 22 {
		return ""
	}
	io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return ""
	}
	return strings.Join([]string{f[7], f[9], f[11], f[12], f[21]}, " ") + "\n" + string(io)
}

// reapThreads reaps the threads of the killed process pid other than
// its leader, as their tracer (any thread of amber may wait for them);
// threads amber does not trace are not its to reap (ECHILD).
func reapThreads(pid int) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return
	}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil || tid == pid {
			continue
		}
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(tid, &ws, unix.WALL, nil)
			if err != unix.EINTR {
				break
			}
		}
	}
}

// wait waits for the next stop of the task and fails if it exited.
func (t *Task) wait() (unix.WaitStatus, error) {
	_, ws, err := t.wait4()
	if err != nil {
		return ws, fmt.Errorf("wait pid %d: %w", t.Pid, err)
	}
	switch {
	case ws.Exited():
		return ws, fmt.Errorf("pid %d exited with status %d: %w", t.Pid, ws.ExitStatus(), ErrGone)
	case ws.Signaled():
		return ws, fmt.Errorf("pid %d killed by %v: %w", t.Pid, ws.Signal(), ErrGone)
	}
	return ws, nil
}

// WaitDead waits, as the tracer, until the task (killed by the caller)
// has exited, at most for its timeout. A thread-group leader is reported
// only after its other threads: wait for those first, or use KillAll.
func (t *Task) WaitDead() error {
	for {
		_, ws, err := t.wait4()
		if errors.Is(err, unix.ECHILD) {
			return nil // reaped already, or never ours to reap
		}
		if err != nil {
			return fmt.Errorf("wait for pid %d to die: %w", t.Pid, err)
		}
		if ws.Exited() || ws.Signaled() {
			return nil
		}
	}
}

// KillAll kills the tasks with SIGKILL and waits until every one has
// exited, whatever order the kernel reports them in: a thread-group
// leader only after its threads, a pid namespace's init only after the
// processes of its namespace, which amber, their tracer, must reap first.
// It fails if they are not all gone within the timeout.
func KillAll(tasks []*Task, timeout time.Duration) error {
	left := map[int]bool{}
	for _, t := range tasks {
		left[t.Pid] = true
		unix.Tgkill(t.Pid, t.Pid, unix.SIGKILL)
	}
	deadline := time.Now().Add(timeout)
	for len(left) > 0 {
		got, ws, err := wait4(-1, max(time.Until(deadline), 0))
		if errors.Is(err, unix.ECHILD) {
			return nil // nothing left that amber traces
		}
		if err != nil {
			return fmt.Errorf("wait for %d killed tasks: %w", len(left), err)
		}
		if ws.Exited() || ws.Signaled() {
			delete(left, got)
		}
		// A stop on the way out (an exit event): a dying task goes on.
	}
	return nil
}
