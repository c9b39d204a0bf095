// Package dump checkpoints a running process into an images directory.
// Run reads like CRIU's cr_dump_tasks: check and freeze the task, collect
// each kind of state, write the images, then kill or release the task. A
// dump that fails leaves the task running as it was.
package dump

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/files"
	"amber/internal/image"
	"amber/internal/log"
	"amber/internal/proc"
)

// Options are the dump settings of CRIU's command line.
type Options struct {
	Pid          int    // -t, --tree: root of the tree to dump
	ImagesDir    string // -D, --images-dir
	LeaveRunning bool   // -R, --leave-running
	ShellJob     bool   // -j, --shell-job
	Log          *log.Logger
}

// dumper carries one dump's settings and collected state.
type dumper struct {
	opts  Options
	dir   image.Dir
	log   *log.Logger
	files *files.Table
}

// Run dumps the process opts.Pid.
func Run(opts Options) error {
	if opts.Log == nil {
		opts.Log = log.Discard()
	}
	d := &dumper{opts: opts, dir: image.Dir(opts.ImagesDir), log: opts.Log, files: files.NewTable()}
	if err := d.run(); err != nil {
		return fmt.Errorf("dump pid %d: %w", opts.Pid, err)
	}
	return nil
}

func (d *dumper) run() error {
	pid := d.opts.Pid
	if err := checkTask(pid); err != nil {
		return err
	}
	if st, err := os.Stat(d.opts.ImagesDir); err != nil || !st.IsDir() {
		return fmt.Errorf("images directory %s: not a directory (%v)", d.opts.ImagesDir, err)
	}
	// ptrace binds a tracee to the thread that attached it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	d.log.Infof("Freezing pid %d", pid)
	task, err := compel.Seize(pid)
	if err != nil {
		return explainSeize(pid, err)
	}
	if err := d.dumpFrozen(task); err != nil {
		if derr := task.Detach(); derr != nil {
			d.log.Errorf("release pid %d after failed dump: %v", pid, derr)
		}
		return err
	}
	if d.opts.LeaveRunning {
		d.log.Infof("Releasing pid %d (--leave-running)", pid)
		return task.Detach()
	}
	d.log.Infof("Killing pid %d", pid)
	return killTraced(task)
}

// checkTask refuses what this version cannot dump, before touching the
// task.
func checkTask(pid int) error {
	st, err := proc.ReadStatus(pid)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no process with pid %d", pid)
	}
	if err != nil {
		return err
	}
	if st.Tgid != pid {
		return fmt.Errorf("pid %d is a thread of process %d: dump the process", pid, st.Tgid)
	}
	if st.Threads > 1 {
		return fmt.Errorf("process %d (%s) has %d threads: multi-threaded processes are not supported yet", pid, st.Name, st.Threads)
	}
	if st.TracerPid != 0 {
		return fmt.Errorf("process %d (%s) is already traced by pid %d", pid, st.Name, st.TracerPid)
	}
	kids, err := proc.Children(pid)
	if err != nil {
		return err
	}
	if len(kids) > 0 {
		return fmt.Errorf("process %d (%s) has children %v: process trees are not supported yet", pid, st.Name, kids)
	}
	return nil
}

func explainSeize(pid int, err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("may not trace pid %d (ptrace: operation not permitted; is it another user's, or is amber not root?): %w", pid, err)
	}
	return err
}

// killTraced kills a task amber traces and waits until it is dead, so that
// the dumped process is gone when dump returns.
func killTraced(t *compel.Task) error {
	if err := unix.Kill(t.Pid, unix.SIGKILL); err != nil {
		return fmt.Errorf("kill pid %d: %w", t.Pid, err)
	}
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(t.Pid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || ws.Exited() || ws.Signaled() {
			return nil
		}
	}
}
