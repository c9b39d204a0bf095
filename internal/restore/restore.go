// Package restore brings a dumped process back from an images directory.
// Run reads like CRIU's cr_restore_tasks: read and check the images, fork
// a task with the dumped PID from a stub, compute its plan (package plan)
// and make the task run it, then load its registers and let it go. A
// restore that fails kills what it created: no task, no stub, no PID
// stays behind.
package restore

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/cpu"
	"amber/internal/creds"
	"amber/internal/image"
	"amber/internal/log"
	"amber/internal/proc"
	"amber/internal/rlimit"
)

// Options are the restore settings of CRIU's command line.
type Options struct {
	ImagesDir string // -D, --images-dir
	Detach    bool   // -d, --restore-detached
	ShellJob  bool   // -j, --shell-job
	Log       *log.Logger
}

// Result tells what was restored.
type Result struct {
	Pid int // PID of the restored root task
}

// Run restores the images in opts.ImagesDir. The restored task is a child
// of the calling process: without Detach the caller waits for it.
func Run(opts Options) (Result, error) {
	if opts.Log == nil {
		opts.Log = log.Discard()
	}
	t, err := load(image.Dir(opts.ImagesDir))
	if err != nil {
		return Result{}, fmt.Errorf("restore: %w", err)
	}
	if err := restoreTask(t, opts); err != nil {
		return Result{}, fmt.Errorf("restore pid %d: %w", t.pid, err)
	}
	return Result{Pid: t.pid}, nil
}

func restoreTask(t *taskImages, opts Options) (err error) {
	h, err := newHost(opts)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	stub, err := compel.StartStub()
	if err != nil {
		return err
	}
	defer stub.Close()
	task, err := stub.Fork(t.pid)
	if errors.Is(err, compel.ErrPidInUse) {
		return fmt.Errorf("pid %d is in use by %s", t.pid, describePid(t.pid))
	}
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			task.Kill()
		}
	}()
	if h.current, err = proc.ReadSmaps(task.Pid); err != nil {
		return err
	}
	p, err := planTask(t, h)
	if err != nil {
		return err
	}
	for _, w := range p.warnings {
		opts.Log.Warnf("pid %d: %s", t.pid, w)
	}
	if opts.Log.Enabled(log.LevelDebug) {
		opts.Log.Debugf("pid %d: plan of %d calls, scratch %#x+%#x:\n%s", t.pid, len(p.prog.Calls), p.prog.Base, p.prog.Size, p.prog)
	}
	opts.Log.Infof("pid %d: running %d planned calls", t.pid, len(p.prog.Calls))
	return run(task, stub.Insn(), p, t)
}

func newHost(opts Options) (*host, error) {
	lims, err := rlimit.Current()
	if err != nil {
		return nil, err
	}
	st, err := proc.ReadStatus(os.Getpid())
	if err != nil {
		return nil, err
	}
	return &host{
		limits:   lims,
		creds:    creds.Creds{Uid: st.Uid, Gid: st.Gid, Groups: st.Groups},
		amberPid: os.Getpid(),
		shellJob: opts.ShellJob,
		stat:     os.Stat,
	}, nil
}

// describePid names the process holding pid, for an error message.
func describePid(pid int) string {
	st, err := proc.ReadStatus(pid)
	if err != nil {
		return "another process or thread"
	}
	if st.Tgid != pid {
		return fmt.Sprintf("a thread of %s (pid %d)", st.Name, st.Tgid)
	}
	return fmt.Sprintf("%s (pid %d)", st.Name, pid)
}

// run makes the task carry out its plan: map the scratch area, load it,
// run the table, unmap the scratch area, load the registers, release.
func run(task *compel.Task, stubInsn uint64, p *planned, t *taskImages) error {
	prog := p.prog
	ret, err := task.SyscallOK(stubInsn, unix.SYS_MMAP, prog.Base, prog.Size,
		unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0)
	if err != nil {
		return fmt.Errorf("map scratch area %#x+%#x: %w", prog.Base, prog.Size, err)
	}
	if ret != prog.Base {
		return fmt.Errorf("map scratch area: got %#x, want %#x", ret, prog.Base)
	}
	if err := task.WriteMem(prog.Base, prog.Image); err != nil {
		return err
	}
	xsize, err := xstateSize(task)
	if err != nil {
		return err
	}
	if err := task.RunTable(prog.Code(), prog.Table, len(prog.Calls)); err != nil {
		var te *compel.TableError
		if errors.As(err, &te) && te.Index < len(prog.Calls) {
			return fmt.Errorf("%s: %w", prog.Calls[te.Index].What, te.Errno)
		}
		return err
	}
	if _, err := task.SyscallOK(prog.Insn(), unix.SYS_MUNMAP, prog.Base, prog.Size); err != nil {
		return fmt.Errorf("unmap scratch area: %w", err)
	}
	if err := loadRegisters(task, t, xsize); err != nil {
		return err
	}
	return task.Detach()
}

func xstateSize(task *compel.Task) (int, error) {
	xs, err := task.XState()
	if err != nil {
		return 0, err
	}
	return len(xs), nil
}

// loadRegisters sets the dumped registers. A task frozen inside a system
// call is set up the way the kernel would have resumed it.
func loadRegisters(task *compel.Task, t *taskImages, xsize int) error {
	ti := t.core.GetThreadInfo()
	regs, err := cpu.GPRegsFromImage(ti.GetGpregs())
	if err != nil {
		return fmt.Errorf("core-%d.img: %w", t.pid, err)
	}
	restartSyscall(&regs)
	xs, err := cpu.HostLayout().XSaveFromImage(ti.GetFpregs(), xsize)
	if err != nil {
		return fmt.Errorf("core-%d.img: %w", t.pid, err)
	}
	if err := task.SetXState(xs); err != nil {
		return err
	}
	return task.SetRegs(&regs)
}

// Kernel-internal return values of an interrupted system call
// (include/linux/errno.h).
const (
	errRestartSys          = 512
	errRestartNoIntr       = 513
	errRestartNoHand       = 514
	errRestartRestartBlock = 516
)

// negErrno is -e as a system call returns it in rax.
func negErrno(e unix.Errno) uint64 { return uint64(-int64(e)) }

// restartSyscall rewrites the registers of a task frozen inside a system
// call: calls the kernel would restart are re-entered (rip back over the
// 2-byte syscall instruction), and a restart through restart_syscall,
// whose saved state died with the old task, returns EINTR as after a
// signal.
func restartSyscall(r *compel.Regs) {
	if int64(r.Orig_rax) >= 0 {
		switch -int64(r.Rax) {
		case errRestartSys, errRestartNoIntr, errRestartNoHand:
			r.Rax = r.Orig_rax
			r.Rip -= 2
		case errRestartRestartBlock:
			r.Rax = negErrno(unix.EINTR)
		}
	}
	r.Orig_rax = ^uint64(0)
}
