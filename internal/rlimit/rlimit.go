// Package rlimit dumps and restores a task's resource limits
// (TaskCoreEntry.rlimits). Dump reads /proc/PID/limits, since prlimit on
// another user's process needs CAP_SYS_RESOURCE; restore has the task set
// its own limits, which it may lower but not raise above what it inherited
// from amber without that capability.
package rlimit

import (
	"encoding/binary"
	"fmt"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	rlimitimg "github.com/checkpoint-restore/go-criu/v8/crit/images/rlimit"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
	"amber/internal/proc"
)

// Dump reads the limits of pid in CRIU's order (by RLIMIT_* number).
func Dump(pid int) (*criucore.TaskRlimitsEntry, error) {
	lims, err := proc.ReadLimits(pid)
	if err != nil {
		return nil, err
	}
	e := &criucore.TaskRlimitsEntry{}
	for _, l := range lims {
		e.Rlimits = append(e.Rlimits, &rlimitimg.RlimitEntry{Cur: proto.Uint64(l.Soft), Max: proto.Uint64(l.Hard)})
	}
	return e, nil
}

// Limit is a soft and hard limit pair.
type Limit struct{ Cur, Max uint64 }

// PlanRestore plans setting each dumped limit that differs from current,
// the limits the new task inherits. A hard limit above the current one
// cannot be restored without CAP_SYS_RESOURCE: it is kept at the current
// value and reported in the returned warnings.
func PlanRestore(b *plan.Builder, e *criucore.TaskRlimitsEntry, current []Limit) (warnings []string) {
	eff := Effective(e, current)
	for res, r := range e.GetRlimits() {
		if res >= len(current) {
			break
		}
		if r.GetMax() > current[res].Max {
			warnings = append(warnings, fmt.Sprintf("rlimit %d: hard limit %d kept at %d (raising it needs CAP_SYS_RESOURCE)", res, r.GetMax(), current[res].Max))
		}
		if eff[res] == current[res] {
			continue
		}
		buf := binary.LittleEndian.AppendUint64(nil, eff[res].Cur)
		buf = binary.LittleEndian.AppendUint64(buf, eff[res].Max)
		b.Call(fmt.Sprintf("set rlimit %d to %d/%d", res, eff[res].Cur, eff[res].Max), unix.SYS_PRLIMIT64, 0, uint64(res), b.Bytes(buf), 0)
	}
	return warnings
}

// Effective returns the limits a task has after PlanRestore ran from
// current: what its children will inherit.
func Effective(e *criucore.TaskRlimitsEntry, current []Limit) []Limit {
	out := append([]Limit(nil), current...)
	for res, r := range e.GetRlimits() {
		if res >= len(out) {
			break
		}
		want := Limit{r.GetCur(), r.GetMax()}
		if want.Max > out[res].Max {
			want.Max = out[res].Max
			want.Cur = min(want.Cur, want.Max)
		}
		out[res] = want
	}
	return out
}

// Current returns the calling process's limits, which a task forked by
// amber inherits.
func Current() ([]Limit, error) {
	var out []Limit
	for res := 0; res < numLimits; res++ {
		var l unix.Rlimit
		if err := unix.Getrlimit(res, &l); err != nil {
			return nil, fmt.Errorf("getrlimit %d: %w", res, err)
		}
		out = append(out, Limit{l.Cur, l.Max})
	}
	return out, nil
}

// numLimits is RLIM_NLIMITS on Linux.
const numLimits = 16
