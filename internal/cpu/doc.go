// Package cpu converts the register state of an x86-64 thread between the
// forms ptrace uses (user_regs_struct, the standard-format XSAVE area of
// PTRACE_GETREGSET NT_X86_XSTATE) and CRIU's core image (go-criu's
// core-x86 entries). It does no ptrace itself: callers read and write the
// raw structures, this package only translates them.
package cpu

import "errors"

// ErrMissingField is returned when an image entry lacks a field that proto2
// declares required; the wrapping error names the field.
var ErrMissingField = errors.New("required field missing")

// ErrCompat is returned for images of 32-bit tasks, which amber cannot
// restore.
var ErrCompat = errors.New("32-bit (compat) tasks are not supported")

// ErrUnsupportedXState is returned when an image holds an XSAVE component
// in use that the target XSAVE area has no room for: the CPU lacks the
// feature, or the kernel's area is too small. The wrapping error names the
// component.
var ErrUnsupportedXState = errors.New("xsave component not supported by this CPU")
