package cpu

import (
	"fmt"

	corex86 "github.com/checkpoint-restore/go-criu/v8/crit/images/core-x86"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// gpField pairs one register of ptrace's user_regs_struct with its field
// in CRIU's entry, so that both directions share a single mapping.
type gpField struct {
	name string // CRIU's field name, for errors
	img  **uint64
	reg  *uint64
}

// gpFields lists every register of r next to its place in e.
func gpFields(e *corex86.UserX86RegsEntry, r *unix.PtraceRegs) []gpField {
	return []gpField{
		{"r15", &e.R15, &r.R15}, {"r14", &e.R14, &r.R14},
		{"r13", &e.R13, &r.R13}, {"r12", &e.R12, &r.R12},
		{"bp", &e.Bp, &r.Rbp}, {"bx", &e.Bx, &r.Rbx},
		{"r11", &e.R11, &r.R11}, {"r10", &e.R10, &r.R10},
		{"r9", &e.R9, &r.R9}, {"r8", &e.R8, &r.R8},
		{"ax", &e.Ax, &r.Rax}, {"cx", &e.Cx, &r.Rcx},
		{"dx", &e.Dx, &r.Rdx}, {"si", &e.Si, &r.Rsi},
		{"di", &e.Di, &r.Rdi}, {"orig_ax", &e.OrigAx, &r.Orig_rax},
		{"ip", &e.Ip, &r.Rip}, {"cs", &e.Cs, &r.Cs},
		{"flags", &e.Flags, &r.Eflags}, {"sp", &e.Sp, &r.Rsp},
		{"ss", &e.Ss, &r.Ss}, {"fs_base", &e.FsBase, &r.Fs_base},
		{"gs_base", &e.GsBase, &r.Gs_base}, {"ds", &e.Ds, &r.Ds},
		{"es", &e.Es, &r.Es}, {"fs", &e.Fs, &r.Fs},
		{"gs", &e.Gs, &r.Gs},
	}
}

// GPRegsToImage converts ptrace's user_regs_struct into CRIU's entry, in
// mode NATIVE. It does not detect 32-bit tasks: the caller should refuse
// them at dump (their cs is __USER32_CS, 0x23).
func GPRegsToImage(r *unix.PtraceRegs) *corex86.UserX86RegsEntry {
	e := &corex86.UserX86RegsEntry{Mode: corex86.UserX86RegsMode_NATIVE.Enum()}
	for _, f := range gpFields(e, r) {
		*f.img = proto.Uint64(*f.reg)
	}
	return e
}

// GPRegsFromImage converts CRIU's entry back into ptrace's
// user_regs_struct. It fails if a required field is missing or the entry
// belongs to a 32-bit task.
func GPRegsFromImage(e *corex86.UserX86RegsEntry) (unix.PtraceRegs, error) {
	var r unix.PtraceRegs
	if e == nil {
		return r, fmt.Errorf("gpregs: %w", ErrMissingField)
	}
	if err := checkMode(e.GetMode()); err != nil {
		return r, err
	}
	for _, f := range gpFields(e, &r) {
		if *f.img == nil {
			return unix.PtraceRegs{}, fmt.Errorf("gpregs %s: %w", f.name, ErrMissingField)
		}
		*f.reg = **f.img
	}
	return r, nil
}

// checkMode accepts only 64-bit register sets; an absent mode reads as
// NATIVE, its proto default.
func checkMode(m corex86.UserX86RegsMode) error {
	switch m {
	case corex86.UserX86RegsMode_NATIVE:
		return nil
	case corex86.UserX86RegsMode_COMPAT:
		return fmt.Errorf("gpregs mode: %w", ErrCompat)
	default:
		return fmt.Errorf("gpregs mode: unknown value %d", m)
	}
}
