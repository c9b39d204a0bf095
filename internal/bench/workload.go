package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// floorKind says what the floor does for a workload.
type floorKind int

const (
	// floorMem maps one anonymous area of the pages images' size and
	// preads them into it.
	floorMem floorKind = iota
	// floorVMAs creates one one-page VMA per mapping of the workload and
	// preads one page into each.
	floorVMAs
	// floorFiles opens each file the workload holds open and sets its
	// offset.
	floorFiles
	// floorNone: no native program does the same work in a way worth
	// comparing (threads, process trees).
	floorNone
)

// workload is one benchmark program and how to measure it.
type workload struct {
	name   string   // as reported and selected: mem512, vma10k, ...
	prog   string   // the program of test/bench: mem, vmas, ...
	args   []string // its arguments
	floor  floorKind
	vmas   int    // floorVMAs: how many one-page VMAs
	mapped string // floorVMAs: the file the workload maps, in its dir ("": anonymous)
	files  int    // floorFiles: how many files, in filesDir of the workload's dir
	// maybeUnsupported marks workloads amber may not handle yet: a failing
	// amber command is reported as "not supported yet", not as an error.
	maybeUnsupported bool
}

// memWorkload is size MiB of written anonymous memory.
func memWorkload(name string, mib int) workload {
	return workload{name: name, prog: "mem", args: []string{strconv.Itoa(mib)}, floor: floorMem}
}

// allWorkloads is the standard set, in report order.
func allWorkloads() []workload {
	return []workload{
		memWorkload("mem512", 512),
		memWorkload("mem1g", 1024),
		{name: "vma10k", prog: "vmas", args: []string{"10000"}, floor: floorVMAs, vmas: 10000},
		{name: "filemap4k", prog: "filemap", args: []string{"4096"}, floor: floorVMAs, vmas: 4096, mapped: "filemap.data"},
		{name: "files10k", prog: "files", args: []string{"10000"}, floor: floorFiles, files: 10000},
		{name: "threads100", prog: "threads", args: []string{"100"}, floor: floorNone, maybeUnsupported: true},
		{name: "tree50", prog: "tree", args: []string{"50"}, floor: floorNone, maybeUnsupported: true},
	}
}

// WorkloadNames lists the names Options.Workloads accepts, in report order.
func WorkloadNames() []string {
	var names []string
	for _, w := range allWorkloads() {
		names = append(names, w.name)
	}
	return names
}

// namedOnly lists the workloads that run only when named.
func namedOnly() []string {
	var names []string
	for _, m := range migrations() {
		names = append(names, m.name)
	}
	return append(names, "lazyN", "pageserverN")
}

// selectWorkloads returns the named workloads in report order, or all of
// them for no names.
func selectWorkloads(names []string) ([]workload, error) {
	all := allWorkloads()
	if len(names) == 0 {
		return all, nil
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var picked []workload
	for _, w := range all {
		if want[w.name] {
			picked = append(picked, w)
			delete(want, w.name)
		}
	}
	for _, n := range names {
		if want[n] {
			return nil, fmt.Errorf("bench: no workload %q (have %v; when named: %s (N MiB, or 1g))", n, WorkloadNames(),
				strings.Join(namedOnly(), " "))
		}
	}
	return picked, nil
}

// sweepWorkloads are the memory workloads of the restore-vs-size plot.
func sweepWorkloads(sizes []int) []workload {
	ws := make([]workload, len(sizes))
	for i, mib := range sizes {
		ws[i] = memWorkload(fmt.Sprintf("mem%d", mib), mib)
	}
	return ws
}

// programs are the distinct programs ws need, in first-use order.
func programs(ws []workload) []string {
	seen := map[string]bool{}
	var progs []string
	for _, w := range ws {
		if !seen[w.prog] {
			seen[w.prog] = true
			progs = append(progs, w.prog)
		}
	}
	return progs
}
