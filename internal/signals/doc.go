// Package signals converts a task's signal state between the raw
// structures of the x86-64 kernel ABI (struct sigaction as rt_sigaction
// reads and writes it, stack_t as sigaltstack does) and CRIU's image
// entries (go-criu's criu-sa and criu-core).
package signals

import "errors"

// ErrMissingField is returned when an image entry lacks a field that proto2
// declares required; the wrapping error names the field.
var ErrMissingField = errors.New("required field missing")

// ErrCompat is returned for dispositions of 32-bit tasks, which amber
// cannot restore.
var ErrCompat = errors.New("32-bit (compat) tasks are not supported")
