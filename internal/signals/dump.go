package signals

import (
	"fmt"

	criusa "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-sa"
	"golang.org/x/sys/unix"

	"amber/internal/compel"
)

// ActionsQuery asks the task for the disposition of every signal but
// SIGKILL and SIGSTOP, in CRIU's order (62 entries), into *acts.
func ActionsQuery(acts *[]*criusa.SaEntry) compel.Query {
	var sigs []int
	for sig := 1; sig <= NumSignals; sig++ {
		if Restorable(sig) {
			sigs = append(sigs, sig)
		}
	}
	return compel.Query{
		Calls: func(data uint64) []compel.Call {
			calls := make([]compel.Call, len(sigs))
			for i, sig := range sigs {
				calls[i] = compel.Call{Nr: unix.SYS_RT_SIGACTION, Args: [6]uint64{uint64(sig), 0, data + uint64(i)*SigactionSize, 8}}
			}
			return calls
		},
		DataSize: len(sigs) * SigactionSize,
		Decode: func(_ []uint64, buf []byte) error {
			out := make([]*criusa.SaEntry, len(sigs))
			for i, sig := range sigs {
				a, err := UnmarshalSigaction(buf[i*SigactionSize : (i+1)*SigactionSize])
				if err != nil {
					return fmt.Errorf("signal %d: %w", sig, err)
				}
				out[i] = ToImage(a)
			}
			*acts = out
			return nil
		},
	}
}

// AltStackCall is the call that stores the thread's sigaltstack at addr
// (AltStackSize bytes), for a batch.
func AltStackCall(addr uint64) compel.Call {
	return compel.Call{Nr: unix.SYS_SIGALTSTACK, Args: [6]uint64{0, addr}}
}
