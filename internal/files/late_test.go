package files

import (
	"fmt"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

func TestTreeProcPid(t *testing.T) {
	tree := func(pid int) bool { return pid == 42 || pid == 43 }
	for path, want := range map[string]int{
		"/proc/42/stat": 42, "/proc/43": 43, "/proc/44/stat": 0, "/proc/self/stat": 0,
		"/proc/42x/stat": 0, "/tmp/proc/42/stat": 0, "/proc/sys/fs/nr_open": 0,
	} {
		if got := treeProcPid(path, tree); got != want {
			t.Errorf("%s: pid %d, want %d", path, got, want)
		}
	}
	if got := treeProcPid("/proc/42/stat", nil); got != 0 {
		t.Errorf("no tree: pid %d, want 0", got)
	}
}

// A file under /proc/PID of the tree, which need not exist at planning,
// holds a placeholder at its number in the main plan, and is opened and
// put there (its dup too) by PlanLate; other files are planned as ever.
func TestPlanLate(t *testing.T) {
	l := newLayout()
	stat := l.reg("/proc/42/stat", unix.O_RDONLY, 5)
	delete(l.sizes, "/proc/42/stat") // the child is not there yet
	log := l.reg("/var/log", unix.O_WRONLY, 0)
	l.fd(3, stat, false).fd(4, log, false).fd(6, stat, true)
	l.in.TreePid = func(pid int) bool { return pid == 42 }
	b := plan.NewBuilder(testBase, 0)
	r, err := PlanFds(b, l.in)
	if err != nil {
		t.Fatal(err)
	}
	if _, held := r.Held[stat]; held || !r.IsLate(3) || !r.IsLate(6) || r.IsLate(4) {
		t.Fatalf("late files %+v, held %v: want fds 3 and 6 late and not held", r.Late, r.Held)
	}
	main := b.Len()
	PlanLate(b, r)
	p := b.Finish()
	var opened []string
	for _, c := range p.Calls[:main] {
		if c.Nr == unix.SYS_OPENAT {
			opened = append(opened, cString(t, p, c.Args[1]))
		}
	}
	if !slices.Equal(opened, []string{"/", "/var/log", "/"}) {
		t.Errorf("main plan opens %q, want placeholders at 3 and 6 and /var/log", opened)
	}
	var late []string
	for _, c := range p.Calls[main:] {
		switch c.Nr {
		case unix.SYS_OPENAT:
			late = append(late, "open "+cString(t, p, c.Args[1]))
		case unix.SYS_LSEEK, unix.SYS_DUP3:
			late = append(late, fmt.Sprintf("%s %d %d", plan.SyscallName(c.Nr), c.Args[0], c.Args[1]))
		}
	}
	want := []string{"open /proc/42/stat", "lseek 0 5", "dup3 0 3", "dup3 3 6"}
	if !slices.Equal(late, want) {
		t.Errorf("late plan %q, want %q", late, want)
	}
}

// /dev/tty of a dump without --shell-job is opened in the final section,
// once the session has its controlling terminal back; with --shell-job
// it is amber's terminal, taken in the main plan. A console is opened
// by its path without --shell-job.
func TestPlanDevTty(t *testing.T) {
	for _, shellJob := range []bool{false, true} {
		l := newLayout()
		tty := l.reg("/dev/tty", unix.O_RDWR, 0)
		con := l.reg("/dev/console", unix.O_RDONLY, 0)
		l.fd(3, tty, false)
		if !shellJob {
			l.fd(4, con, false)
		}
		l.in.ShellJob = shellJob
		b := plan.NewBuilder(testBase, 0)
		r, err := PlanFds(b, l.in)
		if err != nil {
			t.Fatalf("shell job %v: %v", shellJob, err)
		}
		if r.IsLate(3) == shellJob {
			t.Errorf("shell job %v: /dev/tty late %v", shellJob, r.IsLate(3))
		}
		main := b.Len()
		PlanLate(b, r)
		p := b.Finish()
		var opened []string
		for i, c := range p.Calls {
			if c.Nr == unix.SYS_OPENAT {
				opened = append(opened, fmt.Sprintf("%v %s", i >= main, cString(t, p, c.Args[1])))
			}
		}
		want := []string{"false /", "false /dev/console", "true /dev/tty"}
		if shellJob {
			want = nil // amber's terminal, through pidfd_getfd
		}
		if !slices.Equal(opened, want) {
			t.Errorf("shell job %v: opens (late, path) %q, want %q", shellJob, opened, want)
		}
	}
}

// In a mount namespace where the task sees amber's /proc over its own
// (TreeProc set), the main plan opens the tree's own /proc and keeps it
// above every target, and the late file is opened under it, relative,
// in the final section, which then closes it.
func TestPlanLateTreeProc(t *testing.T) {
	l := newLayout()
	stat := l.reg("/proc/42/stat", unix.O_RDONLY, 0)
	delete(l.sizes, "/proc/42/stat")
	maps := l.reg("/proc/43/maps", unix.O_RDONLY, 0)
	delete(l.sizes, "/proc/43/maps")
	l.fd(3, stat, false).fd(5, maps, false)
	l.in.TreePid = func(pid int) bool { return pid == 42 || pid == 43 }
	l.in.TreeProc = "/proc/99/fd/12"
	b := plan.NewBuilder(testBase, 0)
	r, err := PlanFds(b, l.in)
	if err != nil {
		t.Fatal(err)
	}
	if r.ProcDir < 6 {
		t.Fatalf("the tree's /proc is held at fd %d: want it above the targets (6 or more)", r.ProcDir)
	}
	main := b.Len()
	PlanLate(b, r)
	p := b.Finish()
	var opened []string
	for i, c := range p.Calls {
		switch c.Nr {
		case unix.SYS_OPENAT:
			opened = append(opened, fmt.Sprintf("%v %d %s", i >= main, int64(c.Args[0]), cString(t, p, c.Args[1])))
		case unix.SYS_CLOSE:
			if i >= main && int(c.Args[0]) == r.ProcDir {
				opened = append(opened, "close the tree's /proc")
			}
		}
	}
	dir := int64(r.ProcDir)
	want := []string{
		"false -100 /proc/99/fd/12", "false -100 /", "false -100 /",
		fmt.Sprintf("true %d 42/stat", dir), fmt.Sprintf("true %d 43/maps", dir), "close the tree's /proc",
	}
	if !slices.Equal(opened, want) {
		t.Errorf("opens (late, dir, path) %q, want %q", opened, want)
	}
}
