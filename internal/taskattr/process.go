package taskattr

import (
	"encoding/binary"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/compel"
	"amber/internal/plan"
)

// Process holds the attributes only the process itself can tell, which
// the dump asks its leader for.
type Process struct {
	// ChildSubreaper is PR_GET_CHILD_SUBREAPER's answer: orphaned
	// descendants are reparented to it rather than to init.
	ChildSubreaper bool
}

// Query asks the leader of a frozen process for its attributes.
func Query(out *Process) compel.Query {
	return compel.Query{
		Calls: func(data uint64) []compel.Call {
			return []compel.Call{{Nr: unix.SYS_PRCTL, Args: [6]uint64{unix.PR_GET_CHILD_SUBREAPER, data}}}
		},
		DataSize: 4,
		Decode: func(_ []uint64, buf []byte) error {
			out.ChildSubreaper = binary.LittleEndian.Uint32(buf) != 0
			return nil
		},
	}
}

// ToImage records p in the leader's task core.
func (p *Process) ToImage(tc *criucore.TaskCoreEntry) {
	tc.ChildSubreaper = proto.Bool(p.ChildSubreaper)
}

// PlanChildSubreaper plans making the process a child subreaper again.
// Run before its children are forked, it is inherited by them as the
// kernel's has_child_subreaper mark, which lets their orphans find it.
func PlanChildSubreaper(b *plan.Builder, tc *criucore.TaskCoreEntry) {
	if tc.GetChildSubreaper() {
		b.Call("become child subreaper", unix.SYS_PRCTL, unix.PR_SET_CHILD_SUBREAPER, 1)
	}
}
