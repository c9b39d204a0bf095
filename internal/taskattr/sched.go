package taskattr

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

// Scheduling policies and flags of sched_getscheduler's answer.
const (
	schedDeadline    = 6          // SCHED_DEADLINE, set only by sched_setattr
	schedResetOnFork = 0x40000000 // SCHED_RESET_ON_FORK
)

// Sched is a thread's scheduling policy (with SCHED_RESET_ON_FORK, as
// sched_getscheduler tells it) and its real-time priority.
type Sched struct {
	Policy, Prio uint32
}

// ReadSched asks the kernel for thread tid's policy and priority, which
// any task may read of any other.
func ReadSched(tid int) (Sched, error) {
	pol, _, e := unix.Syscall(unix.SYS_SCHED_GETSCHEDULER, uintptr(tid), 0, 0)
	if e != 0 {
		return Sched{}, fmt.Errorf("sched_getscheduler %d: %w", tid, e)
	}
	if pol&^schedResetOnFork == schedDeadline {
		return Sched{}, fmt.Errorf("thread %d runs under SCHED_DEADLINE: not supported yet", tid)
	}
	var prio int32
	if _, _, e := unix.Syscall(unix.SYS_SCHED_GETPARAM, uintptr(tid), uintptr(unsafe.Pointer(&prio)), 0); e != 0 {
		return Sched{}, fmt.Errorf("sched_getparam %d: %w", tid, e)
	}
	return Sched{Policy: uint32(pol), Prio: uint32(prio)}, nil
}

// ToImage records s in a thread's core.
func (s Sched) ToImage(th *criucore.ThreadCoreEntry) {
	th.SchedPolicy, th.SchedPrio = proto.Uint32(s.Policy), proto.Uint32(s.Prio)
}

// PlanSched plans the thread setting its nice value, then its policy and
// priority (the nice value stays under a policy that is not real-time);
// the new thread starts with amber's. A real-time policy needs
// CAP_SYS_NICE or RLIMIT_RTPRIO: plan it before the thread gives up its
// credentials.
func PlanSched(b *plan.Builder, th *criucore.ThreadCoreEntry) {
	b.Call(fmt.Sprintf("nice %d", th.GetSchedNice()), unix.SYS_SETPRIORITY, unix.PRIO_PROCESS, 0, uint64(int64(th.GetSchedNice())))
	if th.SchedPolicy == nil {
		return // an image without it: the thread keeps amber's
	}
	param := b.Bytes(binary.LittleEndian.AppendUint32(nil, th.GetSchedPrio())) // struct sched_param
	b.Call(fmt.Sprintf("set scheduling policy %#x priority %d", th.GetSchedPolicy(), th.GetSchedPrio()),
		unix.SYS_SCHED_SETSCHEDULER, 0, uint64(th.GetSchedPolicy()), param)
}
