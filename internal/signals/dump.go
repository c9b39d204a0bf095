package signals

import (
	"fmt"

	criusa "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-sa"
	"golang.org/x/sys/unix"

	"amber/internal/compel"
)

// Batcher runs system calls inside a frozen task, many in one round trip
// (compel.Parasite). Calls may write results at Data.
type Batcher interface {
	Batch(calls []compel.Call) ([]uint64, error)
	Read(addr uint64, buf []byte) error
	Data() uint64
}

// DumpActions asks the task for the disposition of every signal but
// SIGKILL and SIGSTOP, in CRIU's order (62 entries), in one batch.
func DumpActions(inj Batcher) ([]*criusa.SaEntry, error) {
	var calls []compel.Call
	for sig := 1; sig <= NumSignals; sig++ {
		if Restorable(sig) {
			at := inj.Data() + uint64(len(calls))*SigactionSize
			calls = append(calls, compel.Call{Nr: unix.SYS_RT_SIGACTION, Args: [6]uint64{uint64(sig), 0, at, 8}})
		}
	}
	if _, err := inj.Batch(calls); err != nil {
		return nil, fmt.Errorf("rt_sigaction: %w", err)
	}
	buf := make([]byte, len(calls)*SigactionSize)
	if err := inj.Read(inj.Data(), buf); err != nil {
		return nil, err
	}
	out := make([]*criusa.SaEntry, len(calls))
	for i := range calls {
		a, err := UnmarshalSigaction(buf[i*SigactionSize : (i+1)*SigactionSize])
		if err != nil {
			return nil, fmt.Errorf("signal %d: %w", calls[i].Args[0], err)
		}
		out[i] = ToImage(a)
	}
	return out, nil
}

// AltStackCall is the call that stores the thread's sigaltstack at addr
// (AltStackSize bytes), for a batch.
func AltStackCall(addr uint64) compel.Call {
	return compel.Call{Nr: unix.SYS_SIGALTSTACK, Args: [6]uint64{0, addr}}
}
