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
// 62 entries, signals 1..64 without SIGKILL and SIGSTOP) that differs from
// what the task inherited: its parent's restored ones, or all default
// (inherited nil) for a task forked from amber's stub.
func PlanActions(b *plan.Builder, acts, inherited []*criusa.SaEntry) error {
	want, err := decodeActions(acts)
	if err != nil {
		return err
	}
	have := make([]KernelSigaction, len(want))
	if inherited != nil {
		if have, err = decodeActions(inherited); err != nil {
			return fmt.Errorf("inherited: %w", err)
		}
	}
	i := 0
	for sig := 1; sig <= NumSignals; sig++ {
		if !Restorable(sig) {
			continue
		}
		if want[i] != have[i] {
			b.Call(fmt.Sprintf("sigaction %d", sig), unix.SYS_RT_SIGACTION, uint64(sig), b.Bytes(want[i].Marshal()), 0, 8)
		}
		i++
	}
	return nil
}

// decodeActions checks and decodes CRIU's list of dispositions.
func decodeActions(acts []*criusa.SaEntry) ([]KernelSigaction, error) {
	if len(acts) != NumSignals-2 {
		return nil, fmt.Errorf("sigactions: %d entries, want %d", len(acts), NumSignals-2)
	}
	out := make([]KernelSigaction, 0, len(acts))
	for sig := 1; sig <= NumSignals; sig++ {
		if !Restorable(sig) {
			continue
		}
		a, err := FromImage(acts[len(out)])
		if err != nil {
			return nil, fmt.Errorf("sigaction of signal %d: %w", sig, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// PlanAltStack plans the thread's sigaltstack, or disabling it: a task
// forked from its restored parent inherited the parent's.
func PlanAltStack(b *plan.Builder, e *criucore.ThreadSasEntry) error {
	s := AltStack{Flags: ssDisable}
	if e != nil {
		var err error
		if s, err = AltStackFromImage(e); err != nil {
			return err
		}
	}
	if s.Flags&ssDisable != 0 {
		s = AltStack{Flags: ssDisable}
	}
	// SS_ONSTACK is a state, not a request: the kernel refuses it.
	s.Flags &^= ssOnstack
	b.Call(fmt.Sprintf("sigaltstack %#x+%d flags %#x", s.Sp, s.Size, s.Flags), unix.SYS_SIGALTSTACK, b.Bytes(s.Marshal()), 0)
	return nil
}

// PlanMask plans the blocked signal mask.
func PlanMask(b *plan.Builder, mask uint64) {
	b.Call(fmt.Sprintf("block signals %#x", mask), unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK,
		b.Bytes(binary.LittleEndian.AppendUint64(nil, mask)), 0, 8)
}
