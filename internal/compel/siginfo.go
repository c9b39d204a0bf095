package compel

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SiginfoSize is the size of a siginfo_t.
const SiginfoSize = 128

// peekSiginfoArgs is struct ptrace_peeksiginfo_args.
type peekSiginfoArgs struct {
	Off   uint64
	Flags uint32
	Nr    int32
}

// PendingSignals returns the siginfo of every signal queued for the task
// and not yet delivered: its own queue, or with shared its process's.
// They stay queued.
func (t *Task) PendingSignals(shared bool) ([][]byte, error) {
	const batch = 32
	args := peekSiginfoArgs{Nr: batch}
	if shared {
		args.Flags = unix.PTRACE_PEEKSIGINFO_SHARED
	}
	buf := make([]byte, batch*SiginfoSize)
	var out [][]byte
	for {
		n, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_PEEKSIGINFO, uintptr(t.Pid),
			uintptr(unsafe.Pointer(&args)), uintptr(unsafe.Pointer(&buf[0])), 0, 0)
		if e != 0 {
			return nil, fmt.Errorf("pid %d: PTRACE_PEEKSIGINFO: %w", t.Pid, e)
		}
		for i := 0; i < int(n); i++ {
			out = append(out, append([]byte(nil), buf[i*SiginfoSize:(i+1)*SiginfoSize]...))
		}
		if n < batch {
			return out, nil
		}
		args.Off += batch
	}
}
