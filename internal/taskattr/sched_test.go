package taskattr

import (
	"encoding/binary"
	"os"
	"testing"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

func TestPlanSched(t *testing.T) {
	th := &criucore.ThreadCoreEntry{SchedNice: proto.Int32(-3)}
	Sched{Policy: unix.SCHED_RR | schedResetOnFork, Prio: 3}.ToImage(th)
	b := newBuilder()
	PlanSched(b, th)
	prog := b.Finish()
	if len(prog.Calls) != 2 || prog.Calls[0].Nr != unix.SYS_SETPRIORITY || prog.Calls[1].Nr != unix.SYS_SCHED_SETSCHEDULER {
		t.Fatalf("calls %v, want setpriority, sched_setscheduler", prog.Calls)
	}
	if int64(prog.Calls[0].Args[2]) != -3 {
		t.Errorf("nice %d, want -3", int64(prog.Calls[0].Args[2]))
	}
	set := prog.Calls[1].Args
	if set[1] != unix.SCHED_RR|schedResetOnFork {
		t.Errorf("policy %#x", set[1])
	}
	off := set[2] - prog.Base
	if prio := binary.LittleEndian.Uint32(prog.Image[off:]); prio != 3 {
		t.Errorf("sched_param holds %d, want 3", prio)
	}
	// An image without the policy keeps what the thread has.
	b = newBuilder()
	PlanSched(b, &criucore.ThreadCoreEntry{SchedNice: proto.Int32(0)})
	if calls := b.Finish().Calls; len(calls) != 1 {
		t.Errorf("no policy in the image: calls %v", calls)
	}
}

func TestReadSchedSelf(t *testing.T) {
	s, err := ReadSched(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	want, err := unix.SchedGetAttr(os.Getpid(), 0)
	if err != nil {
		t.Skip(err)
	}
	if s.Policy&^schedResetOnFork != want.Policy || s.Prio != want.Priority {
		t.Errorf("ReadSched %+v, sched_getattr %+v", s, want)
	}
}
