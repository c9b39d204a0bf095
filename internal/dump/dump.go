// Package dump checkpoints a running process tree into an images
// directory. Run reads like CRIU's cr_dump_tasks: freeze, collect each kind
// of state, write images, then kill or release the tree.
package dump

import (
	"errors"

	"amber/internal/log"
)

// Options are the dump settings of CRIU's command line.
type Options struct {
	Pid          int    // -t, --tree: root of the tree to dump
	ImagesDir    string // -D, --images-dir
	LeaveRunning bool   // -R, --leave-running
	ShellJob     bool   // -j, --shell-job
	Log          *log.Logger
}

// Run dumps the tree rooted at opts.Pid.
func Run(opts Options) error {
	return errors.New("dump: not implemented")
}
