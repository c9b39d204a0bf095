package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pollInterval is how often the bench looks at a process it waits for.
// It is outside every timed interval.
const pollInterval = 5 * time.Millisecond

// becomeSubreaper makes this process a child subreaper and returns a
// function that puts the previous setting back.
func becomeSubreaper() (func(), error) {
	var was int32
	if err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&was)), 0, 0, 0); err != nil {
		return nil, fmt.Errorf("bench: PR_GET_CHILD_SUBREAPER: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("bench: PR_SET_CHILD_SUBREAPER: %w", err)
	}
	return func() {
		if was == 0 {
			unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
		}
	}, nil
}

// startReady starts bin as startProgramIn does and waits until it is
// ready; one that does not get ready is killed.
func startReady(bin string, args []string, dir, out string, cloneflags uintptr) (int, error) {
	pid, err := startProgramIn(bin, args, dir, out, cloneflags)
	if err != nil {
		return 0, err
	}
	if err := waitReady(pid, out, readyTimeout); err != nil {
		killGroup(pid, cleanTimeout)
		return 0, fmt.Errorf("%w; output: %s", err, tail(out))
	}
	return pid, nil
}

// startProgramIn starts bin with args in dir, as a daemon would be: in a
// session of its own, stdin /dev/null, stdout and stderr appending to out,
// in new namespaces (CLONE_NEW* flags, or none). The bench reaps it itself
// with wait4; its PID is also its process group.
func startProgramIn(bin string, args []string, dir, out string, cloneflags uintptr) (int, error) {
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", bin, err)
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: cloneflags}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", bin, err)
	}
	pid := cmd.Process.Pid
	cmd.Process.Release()
	return pid, nil
}

// hasLine says whether the file at path has a line that is exactly line.
func hasLine(path, line string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// waitReady waits until the program pid says `ready` in out. It fails if
// the program exits first (and reaps it) or after timeout.
func waitReady(pid int, out string, timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); ; {
		if hasLine(out, "ready") {
			return nil
		}
		ws, done, err := tryWait(pid)
		if err != nil {
			return err
		}
		if done {
			return fmt.Errorf("pid %d ended before it was ready: %s", pid, describe(ws))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d not ready after %v", pid, timeout)
		}
		time.Sleep(pollInterval)
	}
}

// tryWait reaps pid if it has ended.
func tryWait(pid int) (unix.WaitStatus, bool, error) {
	var ws unix.WaitStatus
	for {
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG|unix.WALL, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return ws, false, fmt.Errorf("wait4 %d: %w", pid, err)
		}
		return ws, got == pid, nil
	}
}

// waitExit waits up to timeout for pid to end and reaps it.
func waitExit(pid int, timeout time.Duration) (unix.WaitStatus, error) {
	for deadline := time.Now().Add(timeout); ; {
		ws, done, err := tryWait(pid)
		if err != nil || done {
			return ws, err
		}
		if time.Now().After(deadline) {
			return ws, fmt.Errorf("pid %d still running after %v", pid, timeout)
		}
		time.Sleep(pollInterval)
	}
}

// reapGroup reaps every child of ours in process group pgid (a workload's
// descendants are orphaned to us, the subreaper, as their parents die)
// until none is left, or fails after timeout.
func reapGroup(pgid int, timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); ; {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-pgid, &ws, unix.WNOHANG|unix.WALL, nil)
		switch {
		case errors.Is(err, unix.ECHILD):
			return nil
		case errors.Is(err, unix.EINTR) || got > 0:
			continue
		case err != nil:
			return fmt.Errorf("reap process group %d: %w", pgid, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process group %d still has live children after %v", pgid, timeout)
		}
		time.Sleep(pollInterval)
	}
}

// killGroup kills process group pgid and reaps what of it is ours.
func killGroup(pgid int, timeout time.Duration) error {
	if err := unix.Kill(-pgid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill process group %d: %w", pgid, err)
	}
	return reapGroup(pgid, timeout)
}

// describe says how a reaped process ended.
func describe(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Sprintf("killed by %v", ws.Signal())
	}
	return fmt.Sprintf("status %#x", uint32(ws))
}
