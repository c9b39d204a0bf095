package cgroups

import (
	"fmt"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/rpc"
)

// Mode says what a restore does with cgroups, by CRIU's names
// (--manage-cgroups).
type Mode int

// The modes of CRIU's --manage-cgroups. Soft is the default.
const (
	// Soft creates the cgroups that are missing and sets their
	// properties; existing ones are used as they are.
	Soft Mode = iota
	// Full sets the properties of existing cgroups too.
	Full
	// Strict refuses a restore into a cgroup that exists already.
	Strict
	// Ignore neither dumps nor restores cgroups.
	Ignore
	// None moves tasks into existing cgroups only, creating none and
	// setting no property.
	None
	// Props moves tasks into existing cgroups only, creating none, and
	// sets their properties.
	Props
)

var modeNames = []string{"soft", "full", "strict", "ignore", "none", "props"}

// String is the mode's name on CRIU's command line.
func (m Mode) String() string {
	if m < 0 || int(m) >= len(modeNames) {
		return fmt.Sprintf("mode(%d)", int(m))
	}
	return modeNames[m]
}

// ParseMode reads a --manage-cgroups value; "" is the default, soft.
func ParseMode(s string) (Mode, error) {
	if s == "" {
		return Soft, nil
	}
	for i, n := range modeNames {
		if strings.EqualFold(s, n) {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("--manage-cgroups: unknown mode %q (want soft, full, strict, ignore, none or props)", s)
}

// ModeOfRPC is the mode CRIU's RPC asks for, as cr-service.c reads it:
// manage_cgroups_mode if set, else ignore when manage_cgroups is false,
// else soft.
func ModeOfRPC(o *rpc.CriuOpts) (Mode, error) {
	if o.ManageCgroupsMode == nil {
		if o.ManageCgroups != nil && !o.GetManageCgroups() {
			return Ignore, nil
		}
		return Soft, nil
	}
	switch o.GetManageCgroupsMode() {
	case rpc.CriuCgMode_SOFT, rpc.CriuCgMode_DEFAULT:
		return Soft, nil
	case rpc.CriuCgMode_FULL:
		return Full, nil
	case rpc.CriuCgMode_STRICT:
		return Strict, nil
	case rpc.CriuCgMode_IGNORE:
		return Ignore, nil
	case rpc.CriuCgMode_CG_NONE:
		return None, nil
	case rpc.CriuCgMode_PROPS:
		return Props, nil
	}
	return 0, fmt.Errorf("manage_cgroups_mode: unknown mode %d", o.GetManageCgroupsMode())
}

// Root is one --cgroup-root: the new root of the dumped paths of one
// controller's hierarchy, or of every hierarchy when Controller is "".
type Root struct {
	Controller string
	Path       string
}

// ParseRoot reads a --cgroup-root or cg_root value, [controller:]/path.
func ParseRoot(s string) (Root, error) {
	ctl, path := "", s
	if i := strings.Index(s, ":"); i >= 0 {
		ctl, path = s[:i], s[i+1:]
	}
	if !strings.HasPrefix(path, "/") {
		return Root{}, fmt.Errorf("cgroup root %q: the path must be absolute ([controller:]/path)", s)
	}
	return Root{Controller: ctl, Path: path}, nil
}
