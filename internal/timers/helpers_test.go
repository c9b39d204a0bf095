package timers

import (
	timerimg "github.com/checkpoint-restore/go-criu/v8/crit/images/timer"
	"google.golang.org/protobuf/proto"
)

func u64(v uint64) *uint64 { return proto.Uint64(v) }

func emptyTimers() *timerimg.TaskTimersEntry {
	z := func() *timerimg.ItimerEntry {
		return &timerimg.ItimerEntry{Isec: u64(0), Iusec: u64(0), Vsec: u64(0), Vusec: u64(0)}
	}
	return &timerimg.TaskTimersEntry{Real: z(), Virt: z(), Prof: z()}
}
