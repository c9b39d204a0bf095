package compel

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bpfMaxInsns is BPF_MAXINSNS, the longest classic BPF program the kernel
// accepts as a seccomp filter.
const bpfMaxInsns = 4096

// SockFilterSize is sizeof(struct sock_filter), one classic BPF
// instruction.
const SockFilterSize = 8

// SeccompFilter is one seccomp filter of a task, as the kernel reports it.
type SeccompFilter struct {
	// Prog is the classic BPF program: struct sock_filter instructions.
	Prog []byte
	// Flags are the SECCOMP_FILTER_FLAG_* the kernel reports
	// (PTRACE_SECCOMP_GET_METADATA: SECCOMP_FILTER_FLAG_LOG only).
	Flags uint32
}

// seccompMetadata is struct seccomp_metadata.
type seccompMetadata struct {
	FilterOff uint64
	Flags     uint64
}

// SeccompFilters returns the filters of a task in seccomp filter mode,
// oldest first: the order in which they were installed, and in which
// installing them again rebuilds the chain. Index 0 of
// PTRACE_SECCOMP_GET_FILTER is the oldest filter.
func (t *Task) SeccompFilters() ([]SeccompFilter, error) {
	var out []SeccompFilter
	buf := make([]byte, bpfMaxInsns*SockFilterSize)
	for i := 0; ; i++ {
		r, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(t.Pid), uintptr(i),
			uintptr(unsafe.Pointer(&buf[0])), 0, 0)
		if e == unix.ENOENT {
			return out, nil
		}
		if e != 0 {
			return nil, fmt.Errorf("pid %d: PTRACE_SECCOMP_GET_FILTER %d: %w", t.Pid, i, e)
		}
		if r == 0 || r > bpfMaxInsns {
			return nil, fmt.Errorf("pid %d: PTRACE_SECCOMP_GET_FILTER %d: %d instructions", t.Pid, i, r)
		}
		f := SeccompFilter{Prog: append([]byte(nil), buf[:r*SockFilterSize]...)}
		md := seccompMetadata{FilterOff: uint64(i)}
		_, _, e = unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_METADATA, uintptr(t.Pid),
			unsafe.Sizeof(md), uintptr(unsafe.Pointer(&md)), 0, 0)
		if e != 0 && e != unix.EIO { // EIO: a kernel without metadata (before 4.16)
			return nil, fmt.Errorf("pid %d: PTRACE_SECCOMP_GET_METADATA %d: %w", t.Pid, i, e)
		}
		f.Flags = uint32(md.Flags)
		out = append(out, f)
	}
}

// ErrSuspendSeccomp is returned when the kernel refuses to suspend a
// task's seccomp filters: amber runs without CAP_SYS_ADMIN, under seccomp
// itself, or on a kernel without CONFIG_CHECKPOINT_RESTORE.
var ErrSuspendSeccomp = errors.New("cannot suspend seccomp (PTRACE_O_SUSPEND_SECCOMP needs CAP_SYS_ADMIN and an amber not under seccomp)")

// SuspendSeccomp makes the task's seccomp mode and filters ignore its
// system calls for as long as amber traces it: the calls amber makes it
// run (the dump's parasite, the restore's plan) are not filtered. Detach
// ends the suspension; the filters act again from then on.
func (t *Task) SuspendSeccomp() error {
	opts := t.opts | unix.PTRACE_O_SUSPEND_SECCOMP
	if err := ptrace(unix.PTRACE_SETOPTIONS, t.Pid, 0, uintptr(opts)); err != nil {
		return fmt.Errorf("pid %d: %w: %w", t.Pid, ErrSuspendSeccomp, err)
	}
	t.opts = opts
	return nil
}
