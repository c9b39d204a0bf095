package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// killMoments is how many moments of a dump TestKillAmberDuringDump kills
// amber at, spread over the programs below.
const killMoments = 30

// killTargets are the programs it dumps: registers of a busy loop, threads
// asleep in futex waits, a poll with a timeout, a tree of processes, and
// signal handlers with an alternate stack and a blocked mask.
var killTargets = []string{"counter", "futex_wait", "poll_restart", "fork_cow", "sigactions"}

// TestKillAmberDuringDump kills `amber dump` with SIGKILL at moments spread
// over a whole dump, with and without --leave-running, each time of a new
// target. The target must run on as it was: alive, untraced, not stopped,
// with its descriptors, signal masks and CPU affinity, and after SIGTERM
// it must find its own state intact (PASS). A scratch mapping amber's
// parasite leaves behind is allowed and counted.
func TestKillAmberDuringDump(t *testing.T) {
	requireAmber(t)
	per := (killMoments + len(killTargets) - 1) / len(killTargets)
	leftovers := 0
	for _, name := range killTargets {
		whole := wholeDumpTime(t, name)
		for k := 0; k < per; k++ {
			at := time.Duration(float64(whole) * (float64(k) + 0.5) / float64(per))
			leave := k%2 == 1
			t.Run(fmt.Sprintf("%s/%v/leave=%v", name, at.Round(time.Microsecond), leave), func(t *testing.T) {
				if killDumpAt(t, name, at, leave) {
					leftovers++
				}
			})
		}
	}
	// The release of a dump --leave-running, densely: there every thread
	// leaves the parasite for its own registers and mask, step by step.
	for _, name := range []string{"poll_restart", "futex_wait"} {
		whole := wholeDumpTime(t, name)
		for k := 0; k < releaseMoments; k++ {
			at := time.Duration(float64(whole) * (0.7 + 0.3*(float64(k)+0.5)/releaseMoments))
			t.Run(fmt.Sprintf("release/%s/%v", name, at.Round(time.Microsecond)), func(t *testing.T) {
				if killDumpAt(t, name, at, true) {
					leftovers++
				}
			})
		}
	}
	t.Logf("%d of %d targets kept an unused scratch mapping", leftovers, per*len(killTargets)+2*releaseMoments)
}

// releaseMoments is how many moments of the last part of a dump
// TestKillAmberDuringDump kills amber at, for each of two programs.
const releaseMoments = 10

// wholeDumpTime is how long a dump --leave-running of name takes, amber's
// start-up included: the least of three.
func wholeDumpTime(t *testing.T, name string) time.Duration {
	t.Helper()
	c := startCase(t, name)
	best := time.Duration(1<<63 - 1)
	for range 3 {
		start := time.Now()
		if r := c.dump("--leave-running"); r.err != nil {
			t.Fatalf("dump: %v", r)
		}
		best = min(best, time.Since(start))
	}
	return best
}

// killDumpAt starts a new target, kills amber `at` into its dump, checks
// the target and reports whether it kept a new mapping.
func killDumpAt(t *testing.T, name string, at time.Duration, leave bool) bool {
	c := startCase(t, name)
	pids := append([]int{c.pid}, descendants(c.pid)...)
	before := snapshotTree(t, pids)
	stderr, check := killDump(t, c, at, leave)
	if !check {
		return false
	}
	after := waitSettled(t, pids, before)
	for _, pid := range pids {
		b, a := before[pid], after[pid]
		if a.fds != b.fds || a.masks != b.masks || a.cpus != b.cpus {
			unix.Kill(c.pid, unix.SIGTERM)
			ws, _ := waitPid(c.pid, time.Second)
			t.Fatalf("pid %d changed by the killed dump (then %s):\nfds %s\nmasks %s\ncpus %s\nwas\nfds %s\nmasks %s\ncpus %s\namber: %s",
				pid, describeStatus(ws), a.fds, a.masks, a.cpus, b.fds, b.masks, b.cpus, stderr)
		}
	}
	c.mustPass()
	return after[c.pid].maps != before[c.pid].maps
}

// killDump runs amber dump on c (with --leave-running if leave) and
// kills it `at` into it. It returns amber's stderr and whether the tree
// is left for the caller to check: not if the dump finished without
// --leave-running, or had begun to kill the tree.
func killDump(t *testing.T, c *zcase, at time.Duration, leave bool) (string, bool) {
	args := c.dumpArgs()
	if leave {
		args = append(args, "--leave-running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), amberTimeout)
	defer cancel()
	cmd, stdout, stderr, err := amberCommand(ctx, testEnv.amber, c.dir, program{}, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	defer stderr.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(at)
	cmd.Process.Signal(unix.SIGKILL)
	err = cmd.Wait()
	if err == nil {
		// The dump finished first: without --leave-running its target is
		// gone, which is not what this test is about.
		t.Logf("dump finished before the kill")
		if !leave {
			return "", false
		}
	}
	if !leave && killing(c) {
		// amber had written the images and begun to kill the tree: it
		// dies, as it would have.
		return "", false
	}
	return readAll(stderr), true
}

// procState is what a killed dump must leave as it was.
type procSnap struct {
	fds, masks, cpus, maps string
}

// snapshotTree takes the state of every process of pids.
func snapshotTree(t *testing.T, pids []int) map[int]procSnap {
	t.Helper()
	out := map[int]procSnap{}
	for _, pid := range pids {
		s, err := snapshotProc(pid)
		if err != nil {
			t.Fatal(err)
		}
		out[pid] = s
	}
	return out
}

func snapshotProc(pid int) (procSnap, error) {
	var s procSnap
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	var names []string
	for _, f := range fds {
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, f.Name()))
		names = append(names, f.Name()+"->"+link)
	}
	sort.Strings(names)
	s.fds = strings.Join(names, " ")
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return s, err
	}
	var masks, cpus []string
	for _, tk := range tasks {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, tk.Name()))
		if err != nil {
			return s, err
		}
		for _, line := range strings.Split(string(st), "\n") {
			k, v, _ := strings.Cut(line, ":")
			switch k {
			case "SigBlk":
				masks = append(masks, tk.Name()+"="+strings.TrimSpace(v))
			case "Cpus_allowed_list":
				cpus = append(cpus, tk.Name()+"="+strings.TrimSpace(v))
			}
		}
	}
	sort.Strings(masks)
	sort.Strings(cpus)
	s.masks, s.cpus = strings.Join(masks, " "), strings.Join(cpus, " ")
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	s.maps = string(maps)
	return s, err
}

// waitSettled waits until no process of pids is traced or stopped, and
// has the state before, and returns their state then; it fails the test
// if one died or stays stopped.
func waitSettled(t *testing.T, pids []int, before map[int]procSnap) map[int]procSnap {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		bad := ""
		for _, pid := range pids {
			st, err := readStat(pid)
			switch {
			case err != nil || st.State == 'Z' || st.State == 'X':
				ws, _ := waitPid(pid, time.Second)
				t.Fatalf("pid %d died when amber was killed: %s", pid, describeStatus(ws))
			case st.State == 't' || st.State == 'T':
				bad = fmt.Sprintf("pid %d is stopped (state %c)", pid, st.State)
			case tracerOf(pid) != 0:
				bad = fmt.Sprintf("pid %d is still traced by %d", pid, tracerOf(pid))
			}
		}
		if bad == "" {
			// The routine of a parasite makes its way back on its own,
			// later on a loaded machine: wait for the state it left
			// behind, until the deadline, which a change that stays
			// does not meet.
			if before == nil {
				// What it leaves is the caller's to check.
				time.Sleep(20 * time.Millisecond)
				return snapshotTree(t, pids)
			}
			now := snapshotTree(t, pids)
			if sameState(now, before) || time.Now().After(deadline) {
				return now
			}
		} else if time.Now().After(deadline) {
			t.Fatal(bad)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sameState tells whether every process has the descriptors, masks and
// CPUs it had.
func sameState(now, before map[int]procSnap) bool {
	for pid, b := range before {
		a := now[pid]
		if a.fds != b.fds || a.masks != b.masks || a.cpus != b.cpus {
			return false
		}
	}
	return true
}

// killing says whether the dump of c got to killing its tree.
func killing(c *zcase) bool {
	b, _ := os.ReadFile(filepath.Join(c.images, "dump.log"))
	return strings.Contains(string(b), "Killing the tree")
}

// tracerOf is the TracerPid of pid's status, 0 if none or unreadable.
func tracerOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "TracerPid:"); ok {
			var n int
			fmt.Sscan(strings.TrimSpace(v), &n)
			return n
		}
	}
	return 0
}
