package files

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// The dump writes one PROCFS remap per dead PID, however many files it
// holds of it, and the restore reads the PIDs back.
func TestDeadProcRemaps(t *testing.T) {
	d := &Dumper{Table: NewTable()}
	st := fakeInfo{name: "status", size: 0}
	a := d.addDeadProc(7, "/proc/7", 0, st, dirFlags)
	b := d.addDeadProc(7, "/proc/7/status", 0, st, unix.O_RDONLY)
	c := d.addDeadProc(9, "/proc/9/mountinfo", 0, st, unix.O_RDONLY)
	if !d.ghosts.isDeadProc(a) || !d.ghosts.isDeadProc(b) || !d.ghosts.isDeadProc(c) {
		t.Fatalf("files %d %d %d not all marked dead", a, b, c)
	}
	img := tempImages(t)
	if err := d.ghosts.write(img); err != nil {
		t.Fatal(err)
	}
	var x Extra
	if err := readGhosts(img, &x); err != nil {
		t.Fatal(err)
	}
	pids := x.DeadPids()
	slices.Sort(pids)
	if !slices.Equal(pids, []int{7, 9}) || len(d.ghosts.remaps) != 2 {
		t.Errorf("dead pids %v from %d remaps, want [7 9] from 2", pids, len(d.ghosts.remaps))
	}
	for path, want := range map[string]bool{"/proc/7": true, "/proc/9/mountinfo": true, "/proc/8/stat": false, "/tmp/7": false} {
		if got := x.deadProc(path); got != want {
			t.Errorf("deadProc(%s) = %v, want %v", path, got, want)
		}
	}
}

// A file of a dead PID is opened in the main plan, unchecked (it is not
// there at planning), under the tree's own /proc when the task sees
// amber's.
func TestPlanDeadProc(t *testing.T) {
	l := newLayout()
	status := l.reg("/proc/7/status", unix.O_RDONLY, 0)
	delete(l.sizes, "/proc/7/status") // the helper is not there yet
	l.fd(3, status, false)
	l.in.Extra = &Extra{deadPids: map[int]bool{7: true}}
	l.in.TreeProc = "/proc/100/fd/9"
	b := plan.NewBuilder(testBase, 0)
	r, err := PlanFds(b, l.in)
	if err != nil {
		t.Fatal(err)
	}
	if r.IsLate(3) || r.ProcDir == 0 {
		t.Fatalf("fd 3 late %v, tree's /proc held at %d: want opened now, under the tree's /proc", r.IsLate(3), r.ProcDir)
	}
	p := b.Finish()
	var opened []string
	for _, c := range p.Calls {
		if c.Nr == unix.SYS_OPENAT {
			opened = append(opened, cString(t, p, c.Args[1]))
		}
	}
	if want := []string{"/proc/100/fd/9", "7/status"}; !slices.Equal(opened, want) {
		t.Errorf("plan opens %q, want %q", opened, want)
	}
}
