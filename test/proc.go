package test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// procStat is the part of /proc/PID/stat the driver looks at.
type procStat struct {
	Comm  string
	State byte // R, S, D, T, t, Z, ...
	Ppid  int
	Ticks uint64 // utime + stime, in clock ticks
}

// parseStat parses the contents of /proc/PID/stat. The command name is
// between the first '(' and the last ')', and may itself hold both.
func parseStat(s string) (procStat, error) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("stat %q: no command name", s)
	}
	f := strings.Fields(s[end+1:])
	// After the name: state(0) ppid(1) ... utime(11) stime(12).
	if len(f) < 13 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("stat %q: too few fields", s)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("stat ppid: %w", err)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return procStat{}, fmt.Errorf("stat times: %w", err)
	}
	return procStat{Comm: s[open+1 : end], State: f[0][0], Ppid: ppid, Ticks: utime + stime}, nil
}

// readStat reads /proc/PID/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(string(b))
}

// ctxSwitches is the sum of voluntary and involuntary context switches of
// pid, from /proc/PID/status.
func ctxSwitches(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	var sum uint64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.HasSuffix(k, "ctxt_switches") {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("status %s: %w", k, err)
			}
			sum += n
		}
	}
	return sum, nil
}

// alive says whether pid exists and is not a zombie.
func alive(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.State != 'Z' && st.State != 'X'
}

// progressing says whether pid runs during the window: it gets CPU time or
// is scheduled (a process that sleeps between steps only shows the latter).
// A process stopped under ptrace or by a signal shows neither.
func progressing(pid int, window time.Duration) (bool, error) {
	st0, err := readStat(pid)
	if err != nil {
		return false, err
	}
	cs0, err := ctxSwitches(pid)
	if err != nil {
		return false, err
	}
	time.Sleep(window)
	st1, err := readStat(pid)
	if err != nil {
		return false, err
	}
	cs1, err := ctxSwitches(pid)
	if err != nil {
		return false, err
	}
	return st1.Ticks > st0.Ticks || cs1 > cs0, nil
}

// pidsByComm lists the live (non-zombie) processes whose command name is comm.
func pidsByComm(comm string) []int {
	var pids []int
	for _, pid := range allPids() {
		if st, err := readStat(pid); err == nil && st.Comm == comm && st.State != 'Z' {
			pids = append(pids, pid)
		}
	}
	return pids
}

// childrenOf lists the processes whose parent is ppid, zombies included.
func childrenOf(ppid int) []int {
	var pids []int
	for _, pid := range allPids() {
		if st, err := readStat(pid); err == nil && st.Ppid == ppid {
			pids = append(pids, pid)
		}
	}
	return pids
}

func allPids() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// unusedPid returns a PID that no process has right now, from the top of
// the PID range, where new processes rarely land.
func unusedPid() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		return 0, err
	}
	max, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("pid_max: %w", err)
	}
	for pid := max - 1; pid > max/2; pid-- {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			return pid, nil
		}
	}
	return 0, errors.New("no unused pid")
}

// openFilesUnder lists the regular files under dir that pid has open.
func openFilesUnder(pid int, dir string) ([]string, error) {
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil || !strings.HasPrefix(target, dir+"/") {
			continue
		}
		if fi, err := os.Stat(target); err == nil && fi.Mode().IsRegular() {
			files = append(files, target)
		}
	}
	return files, nil
}

// descendants lists every process below pid, zombies included.
func descendants(pid int) []int {
	var out []int
	for _, c := range childrenOf(pid) {
		out = append(out, c)
		out = append(out, descendants(c)...)
	}
	return out
}

// reapOrphan waits until pid, killed with its parent, is gone: reaped
// here once it was reparented to this subreaper, or by a parent that
// outlived it.
func reapOrphan(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG|unix.WALL, nil)
		if got == pid {
			return nil
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return nil // reaped by its own parent
		}
		if err != nil && !errors.Is(err, unix.ECHILD) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("wait4 %d: %w", pid, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d of the dumped tree still exists after %v", pid, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitPid waits up to timeout for pid, a child of this process (or an
// orphan it adopted as subreaper), to exit, and reaps it.
func waitPid(pid int, timeout time.Duration) (unix.WaitStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG|unix.WALL, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return 0, fmt.Errorf("wait4 %d: %w", pid, err)
		case got == pid && (ws.Exited() || ws.Signaled()):
			return ws, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("pid %d still running after %v", pid, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killAndReap sends SIGKILL to pid, a child of this process, and reaps it.
func killAndReap(pid int) error {
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	_, err := waitPid(pid, 10*time.Second)
	return err
}

// describeStatus says how a process ended, for messages.
func describeStatus(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus())
}

// describeStuck says where the threads of pid are, for a process that did
// not end when told to: each thread's state, signal masks, wait channel,
// system call and kernel stack, and the process's mappings.
func describeStuck(pid int) string {
	var b strings.Builder
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, tk := range tasks {
		dir := fmt.Sprintf("/proc/%d/task/%s", pid, tk.Name())
		fmt.Fprintf(&b, "thread %s:", tk.Name())
		st, _ := os.ReadFile(dir + "/status")
		for _, line := range strings.Split(string(st), "\n") {
			k, _, _ := strings.Cut(line, ":")
			switch k {
			case "State", "TracerPid", "SigQ", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt":
				fmt.Fprintf(&b, " %s;", strings.Join(strings.Fields(line), " "))
			}
		}
		for _, f := range []string{"wchan", "syscall", "stack"} {
			v, _ := os.ReadFile(dir + "/" + f)
			fmt.Fprintf(&b, "\n  %s: %s", f, strings.TrimSpace(string(v)))
		}
		b.WriteString("\n")
	}
	maps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	b.WriteString("maps:\n" + string(maps))
	return b.String()
}
