package signals

import (
	"encoding/binary"
	"fmt"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	criusa "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-sa"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// ss_flags bits of signal.h.
const (
	ssOnstack = 1
	ssDisable = 2
)

// PlanActions plans setting every signal disposition of the image (CRIU's
// 62 entries, signals 1..64 without SIGKILL and SIGSTOP).
func PlanActions(b *plan.Builder, acts []*criusa.SaEntry) error {
	if len(acts) != NumSignals-2 {
		return fmt.Errorf("sigactions: %d entries, want %d", len(acts), NumSignals-2)
	}
	i := 0
	for sig := 1; sig <= NumSignals; sig++ {
		if !Restorable(sig) {
			continue
		}
		a, err := FromImage(acts[i])
		if err != nil {
			return fmt.Errorf("sigaction of signal %d: %w", sig, err)
		}
		i++
		if a == (KernelSigaction{}) {
			continue // SIG_DFL, as a new task has
		}
		b.Call(fmt.Sprintf("sigaction %d", sig), unix.SYS_RT_SIGACTION, uint64(sig), b.Bytes(a.Marshal()), 0, 8)
	}
	return nil
}

// PlanAltStack plans the thread's sigaltstack.
func PlanAltStack(b *plan.Builder, e *criucore.ThreadSasEntry) error {
	if e == nil {
		return nil
	}
	s, err := AltStackFromImage(e)
	if err != nil {
		return err
	}
	if s.Flags&ssDisable != 0 {
		return nil
	}
	// SS_ONSTACK is a state, not a request: the kernel refuses it.
	s.Flags &^= ssOnstack
	b.Call(fmt.Sprintf("sigaltstack %#x+%d", s.Sp, s.Size), unix.SYS_SIGALTSTACK, b.Bytes(s.Marshal()), 0)
	return nil
}

// PlanMask plans the blocked signal mask.
func PlanMask(b *plan.Builder, mask uint64) {
	b.Call(fmt.Sprintf("block signals %#x", mask), unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK,
		b.Bytes(binary.LittleEndian.AppendUint64(nil, mask)), 0, 8)
}
