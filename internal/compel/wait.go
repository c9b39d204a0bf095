package compel

import (
	"errors"
	"fmt"
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

// Polling: a stop usually comes within microseconds, and while the tracer
// and the task share a CPU the task runs only when the tracer yields it
// the CPU. So the wait first yields, then sleeps ever longer, up to
// maxBackoff, until the deadline.
const (
	yieldTries = 64
	minBackoff = 20 * time.Microsecond
	maxBackoff = time.Millisecond
)

// poller waits for a condition with the policy above.
type poller struct {
	timeout  time.Duration
	tries    int
	deadline time.Time
	backoff  time.Duration
}

// next lets the awaited task run a little and reports false once the
// deadline has passed.
func (p *poller) next() bool {
	p.tries++
	if p.tries <= yieldTries {
		unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		return true
	}
	now := time.Now()
	if p.deadline.IsZero() {
		p.deadline, p.backoff = now.Add(p.timeout), minBackoff
	}
	if now.After(p.deadline) {
		return false
	}
	time.Sleep(p.backoff)
	p.backoff = min(2*p.backoff, maxBackoff)
	return true
}

// waitLimit is how long a wait for t may take: DefaultTimeout unless set.
func (t *Task) waitLimit() time.Duration {
	if t.Timeout == 0 {
		return DefaultTimeout
	}
	return t.Timeout
}

// wait4 waits, at most for the task's timeout, for the next state change
// of pid reported to the tracer (pid -1: of any tracee or child).
func wait4(pid int, limit time.Duration) (int, unix.WaitStatus, error) {
	var ws unix.WaitStatus
	p := poller{timeout: limit}
	for {
		got, err := unix.Wait4(pid, &ws, unix.WALL|unix.WNOHANG, nil)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, ws, err
		case got > 0:
			return got, ws, nil
		}
		if !p.next() {
			return 0, ws, ErrTimeout
		}
	}
}

// wait waits for the next stop of the task and fails if it exited.
func (t *Task) wait() (unix.WaitStatus, error) {
	_, ws, err := wait4(t.Pid, t.waitLimit())
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
		_, ws, err := wait4(t.Pid, t.waitLimit())
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
