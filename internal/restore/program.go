package restore

// Running a plan in a task: loading its scratch area, running its
// sections, and loading the dumped registers.

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/cpu"
	"amber/internal/idmap"
	"amber/internal/plan"
)

// loadProgram maps the scratch area with the `syscall` instruction at
// insn and copies the program into it.
func loadProgram(task *compel.Task, insn uint64, prog *plan.Program) error {
	ret, err := task.SyscallOK(insn, unix.SYS_MMAP, prog.Base, prog.Size,
		unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0)
	if err != nil {
		return fmt.Errorf("map scratch area %#x+%#x: %w", prog.Base, prog.Size, err)
	}
	if ret != prog.Base {
		return fmt.Errorf("map scratch area: got %#x, want %#x", ret, prog.Base)
	}
	return task.WriteMem(prog.Base, prog.Image)
}

// runSection makes task run one section of the program's table, and
// amber the calls in it that are amber's (plan.Call.ByAmber), in their
// turn; users are the maps of the tree's user namespace, if it has one.
func runSection(task *compel.Task, prog *plan.Program, name string, users *idmap.Pair) error {
	sec, ok := prog.Section(name)
	if !ok {
		return fmt.Errorf("internal error: no section %q", name)
	}
	for at := sec.Start; at < sec.End; {
		end := at
		for end < sec.End && !prog.Calls[end].ByAmber {
			end++
		}
		part := plan.Section{Name: sec.Name, Start: at, End: end}
		if err := sectionError(prog, part, task.RunTable(prog.Code(), prog.TableAt(at), end-at)); err != nil {
			return err
		}
		if end == sec.End {
			break
		}
		c := prog.Calls[end]
		if err := runByAmber(task, prog, c, users); err != nil {
			return fmt.Errorf("%v (made by amber for pid %d): %w", c, task.Pid, err)
		}
		at = end + 1
	}
	return nil
}

// sectionError names the planned call that failed in a section.
func sectionError(prog *plan.Program, sec plan.Section, err error) error {
	var te *compel.TableError
	if errors.As(err, &te) && sec.Start+te.Index < len(prog.Calls) {
		return fmt.Errorf("%v: %w", prog.Calls[sec.Start+te.Index], te.Errno)
	}
	return err
}

func xstateSize(task *compel.Task) (int, error) {
	xs, err := task.XState()
	if err != nil {
		return 0, err
	}
	return len(xs), nil
}

// loadRegisters sets the dumped registers. A task frozen inside a system
// call is set up the way the kernel would have resumed it: from its image
// (a call about to be entered again, as CRIU writes it) and the restart
// code amber recorded, if any.
func loadRegisters(task *compel.Task, th threadImages, xsize int, xsave cpu.Layout) error {
	ti := th.core.GetThreadInfo()
	regs, err := cpu.GPRegsFromImage(ti.GetGpregs())
	if err != nil {
		return fmt.Errorf("core-%d.img: %w", th.tid, err)
	}
	if regs, err = compel.KernelRegs(regs, th.restart); err != nil {
		return fmt.Errorf("core-%d.img: %w", th.tid, err)
	}
	compel.ReleaseRegs(&regs)
	xs, err := xsave.XSaveFromImage(ti.GetFpregs(), xsize)
	if err != nil {
		return fmt.Errorf("core-%d.img: %w", th.tid, err)
	}
	if err := task.SetXState(xs); err != nil {
		return err
	}
	return task.SetRegs(&regs)
}
