package signals

import (
	"encoding/binary"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/siginfo"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

func siginfoOf(sig uint32) []byte {
	b := make([]byte, siginfoSize)
	binary.LittleEndian.PutUint32(b, sig)
	return b
}

func TestPlanQueue(t *testing.T) {
	q := QueueToImage([][]byte{siginfoOf(10), siginfoOf(34)})
	b := plan.NewBuilder(0x100000000, 0)
	if err := PlanQueue(b, 100, 101, q, false); err != nil {
		t.Fatal(err)
	}
	if err := PlanQueue(b, 100, 100, q, true); err != nil {
		t.Fatal(err)
	}
	calls := b.Finish().Calls
	if len(calls) != 4 {
		t.Fatalf("%d calls, want 4", len(calls))
	}
	if c := calls[0]; c.Nr != unix.SYS_RT_TGSIGQUEUEINFO || c.Args[0] != 100 || c.Args[1] != 101 || c.Args[2] != 10 {
		t.Errorf("thread queue call %v", c)
	}
	if c := calls[3]; c.Nr != unix.SYS_RT_SIGQUEUEINFO || c.Args[0] != 100 || c.Args[1] != 34 {
		t.Errorf("process queue call %v", c)
	}
}

func TestPlanQueueErrors(t *testing.T) {
	for _, q := range []*siginfo.SignalQueueEntry{
		{Signals: []*siginfo.SiginfoEntry{{Siginfo: []byte{1, 2}}}},
		{Signals: []*siginfo.SiginfoEntry{{Siginfo: siginfoOf(0)}}},
		{Signals: []*siginfo.SiginfoEntry{{Siginfo: siginfoOf(65)}}},
	} {
		if err := PlanQueue(plan.NewBuilder(0, 0), 1, 1, q, false); err == nil {
			t.Errorf("%v: no error", q)
		}
	}
	if QueueToImage(nil) != nil {
		t.Error("an entry for an empty queue")
	}
}
