package taskattr

import (
	"encoding/binary"
	"testing"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
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
