package taskattr

import (
	"encoding/binary"
	"testing"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

func TestQueryDecodes(t *testing.T) {
	var p Process
	q := Query(&p)
	buf := make([]byte, q.DataSize)
	binary.LittleEndian.PutUint32(buf, 1)
	if err := q.Decode(make([]uint64, len(q.Calls(0x1000))), buf); err != nil {
		t.Fatal(err)
	}
	if !p.ChildSubreaper {
		t.Errorf("decoded %+v, want a child subreaper", p)
	}
	tc := &criucore.TaskCoreEntry{}
	p.ToImage(tc)
	if !tc.GetChildSubreaper() {
		t.Errorf("image %v lacks child_subreaper", tc)
	}
}

func TestPlanChildSubreaper(t *testing.T) {
	for _, set := range []bool{false, true} {
		b := newBuilder()
		PlanChildSubreaper(b, &criucore.TaskCoreEntry{ChildSubreaper: proto.Bool(set)})
		calls := b.Finish().Calls
		if !set {
			if len(calls) != 0 {
				t.Errorf("not a subreaper: calls %v", calls)
			}
			continue
		}
		if len(calls) != 1 || calls[0].Nr != unix.SYS_PRCTL || calls[0].Args[0] != unix.PR_SET_CHILD_SUBREAPER || calls[0].Args[1] != 1 {
			t.Errorf("subreaper: calls %v", calls)
		}
	}
}

func TestTHPDisable(t *testing.T) {
	for _, tc := range []struct {
		answer uint64
		want   bool
		refuse bool
	}{{0, false, false}, {1, true, false}, {1 | thpExceptAdvised, false, true}} {
		p := Process{THPDisable: tc.answer}
		e := &mm.MmEntry{}
		err := p.MMToImage(e)
		if (err != nil) != tc.refuse {
			t.Errorf("answer %d: error %v, want refused: %v", tc.answer, err, tc.refuse)
		}
		if err != nil {
			continue
		}
		if e.ThpDisabled == nil || e.GetThpDisabled() != tc.want {
			t.Errorf("answer %d: thp_disabled %v, want %v", tc.answer, e.ThpDisabled, tc.want)
		}
		b := newBuilder()
		PlanTHPDisable(b, e)
		calls := b.Finish().Calls
		if len(calls) != 1 || calls[0].Args[0] != unix.PR_SET_THP_DISABLE || (calls[0].Args[1] == 1) != tc.want {
			t.Errorf("answer %d: calls %v", tc.answer, calls)
		}
	}
	b := newBuilder()
	PlanTHPDisable(b, &mm.MmEntry{})
	if calls := b.Finish().Calls; len(calls) != 0 {
		t.Errorf("no field: calls %v", calls)
	}
}

func TestPlanMembarrier(t *testing.T) {
	b := newBuilder()
	tc := &criucore.TaskCoreEntry{}
	(&Process{Membarrier: 1<<2 | 1<<4}).ToImage(tc)
	if err := PlanMembarrier(b, tc); err != nil {
		t.Fatal(err)
	}
	calls := b.Finish().Calls
	if len(calls) != 2 || calls[0].Args[0] != 1<<2 || calls[1].Args[0] != 1<<4 || calls[0].Nr != unix.SYS_MEMBARRIER {
		t.Errorf("calls %v, want membarrier register 0x4, 0x10", calls)
	}
	tc.MembarrierRegistrationMask = proto.Uint32(1 << 12)
	if err := PlanMembarrier(newBuilder(), tc); err == nil {
		t.Errorf("unknown registration 0x1000 planned")
	}
}
