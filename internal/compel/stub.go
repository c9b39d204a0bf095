package compel

import (
	"errors"
	"fmt"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

// ErrPidInUse is returned by Stub.Fork when the wanted PID is taken.
var ErrPidInUse = errors.New("pid is in use")

// Stub is a traced copy of amber's own binary, stopped at its first
// instruction before its runtime starts. It is never resumed: amber makes it
// fork restored tasks with chosen PIDs (clone3 with set_tid), then kills it.
type Stub struct {
	*Task
	insn uint64 // a `syscall` instruction amber wrote at the stub's entry
	sp   uint64 // stack pointer at entry: room below it holds clone args
	// put is the channel Put gives the stub descriptors by (nil: not
	// made yet).
	put *putChannel
}

// StartStub starts a stub. Tasks it forks inherit its descriptors (none but
// /dev/null on 0-2), its credentials and its limits, i.e. amber's.
func StartStub() (*Stub, error) { return startStub(unix.SIGKILL) }

// StartStubBelow is StartStub from a thread whose children are born in a
// pid namespace below amber's (setns): the stub sees no parent there
// (getppid is 0), which Go's fork takes for its parent's death under a
// parent-death signal, so it goes without one. Once it stops after exec
// PTRACE_O_EXITKILL ties it to amber all the same, and before that, if
// amber dies, it runs as a stub, which exits at once (IsStub).
func StartStubBelow() (*Stub, error) { return startStub(0) }

func startStub(deathSig unix.Signal) (*Stub, error) {
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{"amber-stub"}
	cmd.Env = []string{}
	cmd.SysProcAttr = &unix.SysProcAttr{Ptrace: true, Pdeathsig: deathSig}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start restore stub: %w", err)
	}
	s := &Stub{Task: &Task{Pid: cmd.Process.Pid, owned: true}}
	if err := s.prepare(); err != nil {
		s.Kill()
		return nil, err
	}
	return s, nil
}

func (s *Stub) prepare() error {
	ws, err := s.wait()
	if err != nil {
		return fmt.Errorf("restore stub: %w", err)
	}
	if ws.StopSignal() != unix.SIGTRAP {
		return fmt.Errorf("restore stub pid %d: stopped by %v, want SIGTRAP after exec", s.Pid, ws.StopSignal())
	}
	if err := s.SetOptions(unix.PTRACE_O_EXITKILL | unix.PTRACE_O_TRACEFORK | unix.PTRACE_O_TRACECLONE); err != nil {
		return err
	}
	r, err := s.Regs()
	if err != nil {
		return err
	}
	s.insn, s.sp = r.Rip, r.Rsp
	// syscall; int3: what follows the call is never run, but the kernel
	// reads it when a task stepped through the call stops inside it
	// (enter), and the entry point's own bytes could read as iret.
	if _, err := unix.PtracePokeText(s.Pid, uintptr(s.insn), []byte{0x0f, 0x05, 0xcc}); err != nil {
		return fmt.Errorf("restore stub pid %d: write syscall instruction: %w", s.Pid, err)
	}
	return nil
}

// Insn is the address of a `syscall` instruction in the stub and in every
// task it forks, until they unmap it.
func (s *Stub) Insn() uint64 { return s.insn }

// Fork creates a child with exactly PID pid whose parent is amber (the
// stub's parent, through CLONE_PARENT). The child is traced and stopped
// before running any instruction; it is a copy of the stub.
func (s *Stub) Fork(pid int) (*Task, error) { return s.ForkIn(pid, 0) }

// ForkIn is Fork into new namespaces: nsFlags are CLONE_NEW* flags. With
// CLONE_NEWPID, pid is the child's PID in its new pid namespace (1), and
// the Task's Pid its PID in amber's, chosen by the kernel.
func (s *Stub) ForkIn(pid int, nsFlags uint64) (*Task, error) {
	return s.Clone(s.insn, (s.sp-1024)&^15, CloneSpec{Flags: unix.CLONE_PARENT | nsFlags, Tid: pid})
}

// ForkFrom makes t, a task the stub forked that has run nothing of its
// own yet (its memory is still the stub's), fork a child with exactly
// PID pid in t's pid namespace. The child is traced and stopped, a copy
// of the stub too (it ends by Exit at Insn), with no exit signal: its
// parent reaps it with __WALL.
func (s *Stub) ForkFrom(t *Task, pid int) (*Task, error) {
	return t.Clone(s.insn, (s.sp-1024)&^15, CloneSpec{Tid: pid})
}

// HoldPidfd makes the stub open a pidfd of process pid and returns its
// number there. Every task the stub forks starts with it: a task born in
// a new pid namespace, where pid names no process, reaches pid through
// it (pidfd_getfd).
func (s *Stub) HoldPidfd(pid int) (int, error) {
	fd, err := s.SyscallOK(s.insn, unix.SYS_PIDFD_OPEN, uint64(pid), 0)
	if err != nil {
		return 0, fmt.Errorf("restore stub: pidfd_open of pid %d: %w", pid, err)
	}
	return int(fd), nil
}

// TakeFd makes the stub take a copy of descriptor fd of the process
// whose pidfd it holds at pidfd (HoldPidfd) and returns its number
// there: tasks that may not reach amber's descriptors through
// /proc/AMBER/fd (in a user namespace of their own) reach the stub's.
func (s *Stub) TakeFd(pidfd, fd int) (int, error) {
	got, err := s.SyscallOK(s.insn, unix.SYS_PIDFD_GETFD, uint64(pidfd), uint64(fd), 0)
	if err != nil {
		return 0, fmt.Errorf("restore stub: take fd %d: %w", fd, err)
	}
	return int(got), nil
}

// JoinNamespace makes the stub join the namespace of kind nstype
// (CLONE_NEW*) open at descriptor fd of the process whose pidfd the stub
// holds at pidfd (HoldPidfd): every task it forks from then on is born
// there.
func (s *Stub) JoinNamespace(pidfd, fd int, nstype uintptr) error {
	nsfd, err := s.SyscallOK(s.insn, unix.SYS_PIDFD_GETFD, uint64(pidfd), uint64(fd), 0)
	if err != nil {
		return fmt.Errorf("restore stub: take namespace fd %d: %w", fd, err)
	}
	_, err = s.SyscallOK(s.insn, unix.SYS_SETNS, nsfd, uint64(nstype))
	if _, cerr := s.SyscallOK(s.insn, unix.SYS_CLOSE, nsfd); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore stub: join namespace (fd %d, type %#x): %w", fd, nstype, err)
	}
	return nil
}

// Unshare makes the stub unshare the namespaces of flags (CLONE_NEW*).
// With CLONE_NEWTIME the stub stays in its time namespace and the tasks
// it forks are born in the new one, whose offsets can be set
// (/proc/PID/timens_offsets of the stub) until the first is.
func (s *Stub) Unshare(flags uintptr) error {
	if _, err := s.SyscallOK(s.insn, unix.SYS_UNSHARE, uint64(flags)); err != nil {
		return fmt.Errorf("restore stub: unshare(%#x): %w", flags, err)
	}
	return nil
}

// SetGroup makes gid the stub's real, effective and saved group, with
// no supplementary groups, and keeps it dumpable, which the change
// resets: the tasks reach the stub's descriptors through /proc/STUB/fd.
func (s *Stub) SetGroup(gid int) error {
	for _, c := range []struct {
		name string
		nr   uintptr
		args []uint64
	}{
		{"setresgid", unix.SYS_SETRESGID, []uint64{uint64(gid), uint64(gid), uint64(gid)}},
		{"setgroups", unix.SYS_SETGROUPS, []uint64{0, 0}},
		{"PR_SET_DUMPABLE", unix.SYS_PRCTL, []uint64{unix.PR_SET_DUMPABLE, 1}},
	} {
		if _, err := s.SyscallOK(s.insn, c.nr, c.args...); err != nil {
			return fmt.Errorf("restore stub: group %d: %s: %w", gid, c.name, err)
		}
	}
	return nil
}

// Close kills the stub, and closes amber's end of Put's channel.
func (s *Stub) Close() {
	s.Kill()
	if s.put != nil {
		unix.Close(s.put.mine)
	}
}

// IsStub tells the amber binary, started by StartStub, that it is a stub.
// It never runs in practice: the stub is killed before its first
// instruction. If it does run (amber died mid-restore and EXITKILL failed),
// it must exit at once.
func IsStub() bool { return len(os.Args) > 0 && os.Args[0] == "amber-stub" }
