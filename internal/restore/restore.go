// Package restore brings a dumped process tree back from an images
// directory, driving each new task through ptrace (see package compel).
package restore

import (
	"errors"

	"amber/internal/log"
)

// Options are the restore settings of CRIU's command line.
type Options struct {
	ImagesDir string // -D, --images-dir
	Detach    bool   // -d, --restore-detached
	PidFile   string // --pidfile: gets the restored root's PID
	ShellJob  bool   // -j, --shell-job
	Log       *log.Logger
}

// Result tells what was restored.
type Result struct {
	Pid int // PID of the restored root task
}

// Run restores the images in opts.ImagesDir. With Detach it returns as soon
// as the tree runs; otherwise the caller waits for Result.Pid, which is its
// child.
func Run(opts Options) (Result, error) {
	return Result{}, errors.New("restore: not implemented")
}
