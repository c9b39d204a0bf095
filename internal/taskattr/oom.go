package taskattr

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"amber/internal/plan"
	"amber/internal/proc"
)

// OOMScoreAdjMin is the lowest OOM score adjustment the kernel takes.
const OOMScoreAdjMin = -1000

// ReadOOMScoreAdj reads /proc/PID/oom_score_adj (pid 0: amber's own).
func ReadOOMScoreAdj(pid int) (int32, error) {
	path := "/proc/self/oom_score_adj"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/oom_score_adj", pid)
	}
	b, err := proc.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return int32(v), nil
}

// PlanOOMScoreAdj plans the task writing want to its own
// /proc/self/oom_score_adj. Below floor, the lowest value the task may
// set (the kernel refuses less than the oom_score_adj_min it inherited
// from amber without CAP_SYS_RESOURCE), floor is set instead and a
// warning returned. Nil want (an image without the field) plans nothing.
func PlanOOMScoreAdj(b *plan.Builder, want *int32, floor int32) (warnings []string) {
	if want == nil {
		return nil
	}
	v := *want
	if v < floor {
		warnings = append(warnings, fmt.Sprintf("oom_score_adj %d kept at %d (lowering it needs CAP_SYS_RESOURCE)", v, floor))
		v = floor
	}
	fd := b.Open("oom_score_adj", "/proc/self/oom_score_adj", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	s := strconv.Itoa(int(v))
	b.Call("set oom_score_adj "+s, unix.SYS_WRITE, uint64(fd), b.String(s), uint64(len(s)))
	b.Close(fd)
	return warnings
}

// OOMFloor is the lowest OOM score adjustment a task forked by amber may
// set: any with CAP_SYS_RESOURCE, else no less than amber's own, which is
// no less than the oom_score_adj_min the task inherits.
func OOMFloor() (int32, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("capget: %w", err)
	}
	if data[unix.CAP_SYS_RESOURCE/32].Effective&(1<<(unix.CAP_SYS_RESOURCE%32)) != 0 {
		return OOMScoreAdjMin, nil
	}
	return ReadOOMScoreAdj(0)
}
