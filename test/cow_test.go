package test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestForkCowPss checks that a restore keeps memory shared copy-on-write
// between a parent and its children: fork_cow's 16 MiB area is shared by
// four processes (each child has changed 1 MiB of it), about 19 MiB of
// PSS in all; restored as private copies it would be about 64 MiB. The
// summed PSS of the tree after restore must stay within 1.5 times what it
// was before the dump.
func TestForkCowPss(t *testing.T) {
	c := startCase(t, "fork_cow")
	before, err := treePids(c.pid)
	if err != nil {
		t.Fatal(err)
	}
	pssBefore, err := treePss(t, "before dump", before)
	if err != nil {
		t.Fatal(err)
	}

	c.mustDump() // reaps the whole tree
	c.mustRestoreDetached()

	after, err := treePids(c.pid)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before, after) {
		t.Fatalf("process tree was %v before dump, %v after restore", before, after)
	}
	pssAfter, err := treePss(t, "after restore", after)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("summed PSS of %d processes: %d kB before dump, %d kB after restore", len(after), pssBefore, pssAfter)
	if float64(pssAfter) > 1.5*float64(pssBefore) {
		t.Fatalf("summed PSS grew from %d kB to %d kB (more than 1.5x): memory shared copy-on-write before the dump is no longer shared after restore", pssBefore, pssAfter)
	}
	c.mustPass()
}

// treePids lists root and its descendants, sorted. It reads
// /proc/PID/task/TID/children, or, on kernels without
// CONFIG_PROC_CHILDREN, scans /proc for parent PIDs.
func treePids(root int) ([]int, error) {
	var pids []int
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		pids = append(pids, pid)
		kids, err := childPids(pid)
		if err != nil {
			return nil, err
		}
		queue = append(queue, kids...)
	}
	slices.Sort(pids)
	return pids, nil
}

// childPids lists the children of pid (of all its threads).
func childPids(pid int) ([]int, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		return nil, err
	}
	if len(tasks) == 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/task", pid)); err != nil {
			return nil, fmt.Errorf("process %d: %w", pid, err)
		}
		return childrenOf(pid), nil // no CONFIG_PROC_CHILDREN
	}
	var kids []int
	for _, path := range tasks {
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread exited
		}
		if err != nil {
			return nil, err
		}
		for _, f := range strings.Fields(string(b)) {
			kid, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("%s: %q: %w", path, b, err)
			}
			kids = append(kids, kid)
		}
	}
	return kids, nil
}

// treePss sums the Pss lines of /proc/PID/smaps_rollup over pids, in kB,
// logging each process's share.
func treePss(t *testing.T, when string, pids []int) (int, error) {
	t.Helper()
	sum := 0
	var each []string
	for _, pid := range pids {
		kb, err := pss(pid)
		if err != nil {
			return 0, err
		}
		sum += kb
		each = append(each, fmt.Sprintf("%d: %d kB", pid, kb))
	}
	t.Logf("PSS %s: %s", when, strings.Join(each, ", "))
	return sum, nil
}

// pss reads the Pss of pid, in kB, from /proc/PID/smaps_rollup.
func pss(pid int) (int, error) {
	path := fmt.Sprintf("/proc/%d/smaps_rollup", pid)
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != "Pss" {
			continue
		}
		kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		if err != nil {
			return 0, fmt.Errorf("%s: Pss %q: %w", path, v, err)
		}
		return kb, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return 0, fmt.Errorf("%s: no Pss line", path)
}
