package taskattr

import (
	"fmt"
	"math/bits"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// membarrier(2) commands (linux/membarrier.h).
const (
	membarrierQuery            = 0
	membarrierGetRegistrations = 1 << 9
	// registerCommands are the registrations a process can have; the
	// kernel reports each as the command that made it.
	registerCommands = 1<<2 | 1<<4 | 1<<6 | 1<<8 // GLOBAL_EXPEDITED, PRIVATE_EXPEDITED, ..._SYNC_CORE, ..._RSEQ
)

// canGetRegistrations tells whether this kernel answers
// MEMBARRIER_CMD_GET_REGISTRATIONS (Linux 6.3): before it, a process's
// registrations cannot be seen, and none are dumped.
func canGetRegistrations() bool {
	r, _, e := unix.Syscall(unix.SYS_MEMBARRIER, membarrierQuery, 0, 0)
	return e == 0 && r&membarrierGetRegistrations != 0
}

// checkMembarrier refuses registrations amber does not know how to make
// again.
func checkMembarrier(mask uint32) error {
	if unknown := mask &^ registerCommands; unknown != 0 {
		return fmt.Errorf("membarrier registrations %#x: unknown to amber", unknown)
	}
	return nil
}

// PlanMembarrier plans registering the process's memory again for each
// membarrier command it was registered for. A child forked from its
// restored parent starts with the parent's registrations (fork copies
// them), which nothing can undo: one its parent made after forking it
// stays. Registering again what it has is harmless.
func PlanMembarrier(b *plan.Builder, tc *criucore.TaskCoreEntry) error {
	mask := tc.GetMembarrierRegistrationMask()
	if err := checkMembarrier(mask); err != nil {
		return err
	}
	for mask != 0 {
		cmd := uint64(1) << bits.TrailingZeros32(mask)
		mask &^= uint32(cmd)
		b.Call(fmt.Sprintf("membarrier register %#x", cmd), unix.SYS_MEMBARRIER, cmd, 0, 0)
	}
	return nil
}
