package taskattr

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/idmap"
	"amber/internal/plan"
	"amber/internal/proc"
)

// The audit login UID (/proc/PID/loginuid, CONFIG_AUDIT) is the user a
// login session started as; children inherit it. Only the task itself
// may write its own, so restore plans the write inside the new task,
// before it forks its threads and children, which then inherit it.

// ReadLoginuid reads /proc/PID/loginuid (pid 0: amber's own). A kernel
// without audit has no such file: nil then. "4294967295" is the unset
// value and is kept as such.
func ReadLoginuid(pid int) (*uint32, error) {
	path := "/proc/self/loginuid"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/loginuid", pid)
	}
	b, err := proc.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return proto.Uint32(uint32(v)), nil
}

// PlanLoginuid plans the task writing want to its own
// /proc/self/loginuid, unless it inherits that value already (inherited:
// its restored parent's, or amber's for the root; nil when unknown).
// Nil want (an image without the field, or a kernel without audit at
// dump) plans nothing. Changing a login UID already set needs
// CAP_AUDIT_CONTROL and an audit configuration that allows it: restore
// fails otherwise, as the process would not be what was dumped.
func PlanLoginuid(b *plan.Builder, want, inherited *uint32) {
	if want == nil || inherited != nil && *inherited == *want {
		return
	}
	fd := b.Open("loginuid", "/proc/self/loginuid", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	s := strconv.FormatUint(uint64(*want), 10)
	b.Call("set loginuid "+s, unix.SYS_WRITE, uint64(fd), b.String(s), uint64(len(s)))
	b.Close(fd)
}

// loginuidUnset is the login UID of a task that has none.
const loginuidUnset = 4294967295

// InnerLoginuid is the login UID v, read from amber's side, as the user
// namespace of ids sees it (the view the images hold, CRIU's, and the
// one a task writing its own uses); unset stays unset, nil ids or v
// leave it as it is.
func InnerLoginuid(v *uint32, ids *idmap.Pair) *uint32 {
	if v == nil || ids == nil || *v == loginuidUnset {
		return v
	}
	return proto.Uint32(ids.InnerUid(*v))
}
