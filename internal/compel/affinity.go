package compel

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// A ptrace round trip wakes the tracee and then the tracer; when both
// share one CPU the wake-ups need no other CPU to leave idle, which makes
// a round trip several times shorter on these VMs. Pinning makes that so.

// Pin binds the calling thread, the tracer, to the CPU it runs on. It
// returns the former affinity (what Unpin puts back) and the new one.
// Tasks the thread forks from now on inherit the binding.
func Pin() (old, pinned unix.CPUSet, err error) {
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return old, pinned, fmt.Errorf("sched_getaffinity: %w", err)
	}
	cpu, err := currentCPU()
	if err != nil {
		return old, pinned, err
	}
	pinned.Set(cpu)
	if err := unix.SchedSetaffinity(0, &pinned); err != nil {
		return old, pinned, fmt.Errorf("sched_setaffinity: %w", err)
	}
	return old, pinned, nil
}

// Unpin gives the calling thread the affinity old back.
func Unpin(old unix.CPUSet) { unix.SchedSetaffinity(0, &old) }

func currentCPU() (int, error) {
	var cpu, node uint32
	_, _, e := unix.RawSyscall(unix.SYS_GETCPU, uintptrOf(&cpu), uintptrOf(&node), 0)
	if e != 0 {
		return 0, fmt.Errorf("getcpu: %w", e)
	}
	return int(cpu), nil
}

// Affinity returns the task's CPU affinity.
func (t *Task) Affinity() (unix.CPUSet, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(t.Pid, &set); err != nil {
		return set, fmt.Errorf("pid %d: sched_getaffinity: %w", t.Pid, err)
	}
	return set, nil
}

// SetAffinity sets the task's CPU affinity.
func (t *Task) SetAffinity(set unix.CPUSet) error {
	if err := unix.SchedSetaffinity(t.Pid, &set); err != nil {
		return fmt.Errorf("pid %d: sched_setaffinity: %w", t.Pid, err)
	}
	return nil
}
