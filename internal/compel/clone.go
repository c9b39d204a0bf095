package compel

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// CloneSpec says what Task.Clone creates.
type CloneSpec struct {
	Flags      uint64 // CLONE_* flags
	ExitSignal int    // signal the parent gets when the child exits; 0 for threads and CLONE_PARENT
	// Tid is the PID or TID the new task must have, in its own pid
	// namespace: 1 with CLONE_NEWPID.
	Tid int
}

// cloneArgsSize is struct clone_args up to set_tid_size (CLONE_ARGS_SIZE_VER1)
// plus cgroup: what clone3 reads; set_tid follows it.
const cloneArgsSize = unix.CLONE_ARGS_SIZE_VER2

// CloneArgsRoom is the task memory Clone needs at argsAddr.
const CloneArgsRoom = cloneArgsSize + 8

// Clone makes the task run clone3 with set_tid, using the `syscall`
// instruction at insn and CloneArgsRoom bytes of writable task memory at
// argsAddr, and returns the new task, traced (PTRACE_O_TRACECLONE and
// TRACEFORK are inherited from the stub) and stopped before its first
// instruction. ErrPidInUse means the PID or TID is taken. The new
// task's Pid is its PID in amber's pid namespace, which differs from Tid
// in another namespace.
func (t *Task) Clone(insn, argsAddr uint64, spec CloneSpec) (*Task, error) {
	args := make([]byte, CloneArgsRoom)
	le := binary.LittleEndian
	le.PutUint64(args[0:], spec.Flags)
	le.PutUint64(args[32:], uint64(spec.ExitSignal))
	le.PutUint64(args[64:], argsAddr+cloneArgsSize) // set_tid
	le.PutUint64(args[72:], 1)                      // set_tid_size
	le.PutUint64(args[cloneArgsSize:], uint64(spec.Tid))
	if err := t.WriteMem(argsAddr, args); err != nil {
		return nil, fmt.Errorf("clone %d: %w", spec.Tid, err)
	}
	t.NewChild = 0
	ret, err := t.Syscall(insn, unix.SYS_CLONE3, argsAddr, cloneArgsSize)
	if err != nil {
		return nil, fmt.Errorf("clone %d: %w", spec.Tid, err)
	}
	if e := errno(ret); e != 0 {
		if e == unix.EEXIST {
			return nil, fmt.Errorf("clone %d: %w", spec.Tid, ErrPidInUse)
		}
		return nil, fmt.Errorf("clone %d from pid %d: clone3: %w", spec.Tid, t.Pid, e)
	}
	// clone3 returns the PID in the parent's pid namespace (and the
	// parent sees a child made with CLONE_NEWPID by a PID of its own
	// namespace); amber traces by the PID of its own, which the clone
	// event reported.
	if spec.Flags&unix.CLONE_NEWPID == 0 && int(ret) != spec.Tid {
		return nil, fmt.Errorf("clone %d: clone3 returned %d", spec.Tid, ret)
	}
	host := t.NewChild
	if host == 0 {
		return nil, fmt.Errorf("clone %d: no clone event from pid %d", spec.Tid, t.Pid)
	}
	// The kernel copies the tracer's options to a child it attaches.
	child := &Task{Pid: host, Timeout: t.Timeout, owned: true, opts: t.opts}
	if _, err := child.wait(); err != nil {
		return nil, fmt.Errorf("clone %d: wait for first stop: %w", spec.Tid, err)
	}
	return child, nil
}

// Exit makes the task call exit_group(status) with the `syscall` at insn
// and waits until it is dead: it stays a zombie for its parent to reap.
func (t *Task) Exit(insn uint64, status int) error { return t.exit(insn, unix.SYS_EXIT_GROUP, status) }

// ExitThread makes one thread call exit(0) and waits until it is gone;
// the other threads of its process go on.
func (t *Task) ExitThread(insn uint64) error { return t.exit(insn, unix.SYS_EXIT, 0) }

func (t *Task) exit(insn uint64, nr uintptr, status int) error {
	r, err := t.Regs()
	if err != nil {
		return err
	}
	setSyscallRegs(&r, nr, []uint64{uint64(status)})
	enter(&r, insn)
	if err := t.SetRegs(&r); err != nil {
		return err
	}
	return t.resumeUntilDead(0)
}

// KillWith resumes the task with signal sig pending, whose default action
// (the caller made sure of it) kills it, and waits until it is dead.
func (t *Task) KillWith(sig unix.Signal) error { return t.resumeUntilDead(sig) }

func (t *Task) resumeUntilDead(sig unix.Signal) error {
	if err := ptrace(unix.PTRACE_CONT, t.Pid, 0, uintptr(sig)); err != nil {
		return fmt.Errorf("pid %d: resume to exit: %w", t.Pid, err)
	}
	for {
		_, ws, err := t.wait4()
		if err != nil {
			return fmt.Errorf("pid %d: wait for exit: %w", t.Pid, err)
		}
		if ws.Exited() || ws.Signaled() {
			return nil
		}
		// A stop on the way out: go on; the signal was delivered once.
		if err := ptrace(unix.PTRACE_CONT, t.Pid, 0, 0); err != nil {
			return fmt.Errorf("pid %d: resume to exit: %w", t.Pid, err)
		}
	}
}
