package restore

import (
	"testing"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"google.golang.org/protobuf/proto"
)

// TestCgSet: a process's cgroup set is its task core's, or, in CRIU
// 4.x's images, which have none there, its leader's thread core's.
func TestCgSet(t *testing.T) {
	for _, c := range []struct {
		name   string
		tc, th *uint32
		want   uint32
	}{
		{"task core", proto.Uint32(2), proto.Uint32(3), 2},
		{"thread core only (CRIU 4.x)", nil, proto.Uint32(3), 3},
		{"neither", nil, nil, 0},
	} {
		core := &criucore.CoreEntry{Tc: &criucore.TaskCoreEntry{CgSet: c.tc}, ThreadCore: &criucore.ThreadCoreEntry{CgSet: c.th}}
		if got := cgSet(core); got != c.want {
			t.Errorf("%s: set %d, want %d", c.name, got, c.want)
		}
	}
}
