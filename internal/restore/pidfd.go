package restore

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/files"
)

// openDeadPidfds makes amber's pidfds standing for those of the images
// whose process was dead (files.OpenDeadPidfds). The processes they point
// to are restore stubs, which never run: each is killed and reaped before
// this returns, so it holds no PID the tree needs. It must run on the
// tracer's thread.
func openDeadPidfds(tree *treeImages) (*files.DeadPidfds, error) {
	return files.OpenDeadPidfds(tree.root.files, exitedStub)
}

// openDeadPidfdsIn is openDeadPidfds for a tree in a new pid namespace,
// whose init is nsInit (its PID in amber's): the dead processes must be
// of that namespace, as those of the dump were, or a task's
// pidfd_send_signal through their pidfds fails with EINVAL (a process
// of a namespace it cannot see) instead of ESRCH (gone). They are made
// from a thread of amber's of their own whose children are born there;
// it traces them, and it ends with the work. The tree needs every PID it
// takes only later: each is reaped, its PID free again, before this
// returns.
func openDeadPidfdsIn(tree *treeImages, nsInit int) (*files.DeadPidfds, error) {
	type result struct {
		d   *files.DeadPidfds
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the thread's children are born in the tree's
		// pid namespace from now on, so it ends with the goroutine.
		runtime.LockOSThread()
		if err := enterPidNamespace(nsInit); err != nil {
			done <- result{err: err}
			return
		}
		d, err := files.OpenDeadPidfds(tree.root.files, func() (int, func(), error) {
			s, err := compel.StartStubBelow()
			if err != nil {
				return 0, nil, err
			}
			return s.Pid, s.Close, nil
		})
		done <- result{d, err}
	}()
	r := <-done
	return r.d, r.err
}

// enterPidNamespace makes the calling thread's children be born in the
// pid namespace of pid.
func enterPidNamespace(pid int) error {
	at := fmt.Sprintf("/proc/%d/ns/pid", pid)
	fd, err := unix.Open(at, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("pidfds of dead processes: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWPID); err != nil {
		return fmt.Errorf("pidfds of dead processes: enter the pid namespace of pid %d: %w", pid, err)
	}
	return nil
}

// exitedStub starts a restore stub, which never runs, for a dead
// process's pidfds, and returns its PID in amber's namespace and what
// kills and reaps it.
func exitedStub() (int, func(), error) {
	s, err := compel.StartStub()
	if err != nil {
		return 0, nil, err
	}
	return s.Pid, s.Close, nil
}
