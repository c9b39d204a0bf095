package signals

import (
	"fmt"

	criusa "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-sa"
	"golang.org/x/sys/unix"
)

// Injector runs system calls inside a frozen task (compel.Parasite).
type Injector interface {
	Syscall(nr uintptr, args ...uint64) (uint64, error)
	Read(addr uint64, buf []byte) error
}

// DumpActions asks the task, through inj, for the disposition of every
// signal but SIGKILL and SIGSTOP, in CRIU's order (62 entries). scratch is
// task memory the calls may write.
func DumpActions(inj Injector, scratch uint64) ([]*criusa.SaEntry, error) {
	var out []*criusa.SaEntry
	buf := make([]byte, SigactionSize)
	for sig := 1; sig <= NumSignals; sig++ {
		if !Restorable(sig) {
			continue
		}
		if _, err := inj.Syscall(unix.SYS_RT_SIGACTION, uint64(sig), 0, scratch, 8); err != nil {
			return nil, fmt.Errorf("signal %d: rt_sigaction: %w", sig, err)
		}
		if err := inj.Read(scratch, buf); err != nil {
			return nil, fmt.Errorf("signal %d: %w", sig, err)
		}
		a, err := UnmarshalSigaction(buf)
		if err != nil {
			return nil, fmt.Errorf("signal %d: %w", sig, err)
		}
		out = append(out, ToImage(a))
	}
	return out, nil
}

// DumpAltStack asks the task for its sigaltstack.
func DumpAltStack(inj Injector, scratch uint64) (AltStack, error) {
	if _, err := inj.Syscall(unix.SYS_SIGALTSTACK, 0, scratch); err != nil {
		return AltStack{}, fmt.Errorf("sigaltstack: %w", err)
	}
	buf := make([]byte, AltStackSize)
	if err := inj.Read(scratch, buf); err != nil {
		return AltStack{}, err
	}
	return UnmarshalAltStack(buf)
}
