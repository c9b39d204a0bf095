package signals

import (
	"encoding/binary"
	"fmt"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/siginfo"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// QueueToImage puts queued signals' siginfo into CRIU's entry; nil when
// nothing is queued.
func QueueToImage(infos [][]byte) *siginfo.SignalQueueEntry {
	if len(infos) == 0 {
		return nil
	}
	q := &siginfo.SignalQueueEntry{}
	for _, si := range infos {
		q.Signals = append(q.Signals, &siginfo.SiginfoEntry{Siginfo: si})
	}
	return q
}

// siginfoSize is sizeof(siginfo_t).
const siginfoSize = 128

// PlanQueue plans queueing the dumped pending signals again, with their
// siginfo: a thread's own (rt_tgsigqueueinfo to tid) or, with shared, the
// process's (rt_sigqueueinfo). The task queues them to itself, which the
// kernel allows for any si_code. It comes after the signal mask, so that
// the blocked ones stay pending.
func PlanQueue(b *plan.Builder, pid, tid int, q *siginfo.SignalQueueEntry, shared bool) error {
	for i, e := range q.GetSignals() {
		si := e.GetSiginfo()
		if len(si) != siginfoSize {
			return fmt.Errorf("pending signal %d: siginfo of %d bytes, want %d", i, len(si), siginfoSize)
		}
		sig := binary.LittleEndian.Uint32(si)
		if sig == 0 || sig > NumSignals {
			return fmt.Errorf("pending signal %d: bad signal number %d", i, sig)
		}
		if shared {
			b.Call(fmt.Sprintf("queue signal %d to the process", sig), unix.SYS_RT_SIGQUEUEINFO, uint64(pid), uint64(sig), b.Bytes(si))
		} else {
			b.Call(fmt.Sprintf("queue signal %d to thread %d", sig, tid), unix.SYS_RT_TGSIGQUEUEINFO, uint64(pid), uint64(tid), uint64(sig), b.Bytes(si))
		}
	}
	return nil
}
