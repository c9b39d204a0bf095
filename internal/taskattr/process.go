package taskattr

import (
	"encoding/binary"
	"fmt"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
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
	// THPDisable is PR_GET_THP_DISABLE's answer: transparent huge pages
	// are off for the whole memory (1), or but where madvise asks for
	// them (with PR_THP_DISABLE_EXCEPT_ADVISED).
	THPDisable uint64
	// Membarrier is MEMBARRIER_CMD_GET_REGISTRATIONS's answer: the
	// register commands the process's memory was registered with.
	Membarrier uint32
}

// thpExceptAdvised is PR_THP_DISABLE_EXCEPT_ADVISED (Linux 6.18), a flag
// of PR_GET_THP_DISABLE's answer.
const thpExceptAdvised = 1 << 1

// Query asks the leader of a frozen process for its attributes.
func Query(out *Process) compel.Query {
	regs := canGetRegistrations()
	return compel.Query{
		Calls: func(data uint64) []compel.Call {
			calls := []compel.Call{
				{Nr: unix.SYS_PRCTL, Args: [6]uint64{unix.PR_GET_CHILD_SUBREAPER, data}},
				{Nr: unix.SYS_PRCTL, Args: [6]uint64{unix.PR_GET_THP_DISABLE}},
			}
			if regs {
				calls = append(calls, compel.Call{Nr: unix.SYS_MEMBARRIER, Args: [6]uint64{membarrierGetRegistrations}})
			}
			return calls
		},
		DataSize: 4,
		Decode: func(res []uint64, buf []byte) error {
			out.ChildSubreaper = binary.LittleEndian.Uint32(buf) != 0
			out.THPDisable = res[1]
			if regs {
				out.Membarrier = uint32(res[2])
			}
			return checkMembarrier(out.Membarrier)
		},
	}
}

// ToImage records p in the leader's task core.
func (p *Process) ToImage(tc *criucore.TaskCoreEntry) {
	tc.ChildSubreaper = proto.Bool(p.ChildSubreaper)
	if p.Membarrier != 0 {
		tc.MembarrierRegistrationMask = proto.Uint32(p.Membarrier)
	}
}

// MMToImage records in the memory image what p says of the memory.
// CRIU's image has no room for THP disabled except where advised:
// restoring it as disabled everywhere would change what the process
// gets, so such a process is refused.
func (p *Process) MMToImage(e *mm.MmEntry) error {
	if p.THPDisable&thpExceptAdvised != 0 {
		return fmt.Errorf("transparent huge pages disabled except where advised (PR_THP_DISABLE_EXCEPT_ADVISED): CRIU's images cannot record it")
	}
	e.ThpDisabled = proto.Bool(p.THPDisable != 0)
	return nil
}

// PlanTHPDisable plans setting the process's transparent huge pages
// flag, which it may have inherited from amber or from its parent
// whatever its own was. Nil (an image without the field) plans nothing.
func PlanTHPDisable(b *plan.Builder, e *mm.MmEntry) {
	if e.ThpDisabled == nil {
		return
	}
	var v uint64
	if e.GetThpDisabled() {
		v = 1
	}
	b.Call(fmt.Sprintf("set THP disabled %d", v), unix.SYS_PRCTL, unix.PR_SET_THP_DISABLE, v, 0, 0, 0)
}

// PlanChildSubreaper plans making the process a child subreaper again.
// Its descendants get the kernel's has_child_subreaper mark, which lets
// their orphans find it, whether they are forked before or after (Linux
// 4.11 marks those already there).
func PlanChildSubreaper(b *plan.Builder, tc *criucore.TaskCoreEntry) {
	if tc.GetChildSubreaper() {
		b.Call("become child subreaper", unix.SYS_PRCTL, unix.PR_SET_CHILD_SUBREAPER, 1)
	}
}
