package signals

import (
	"encoding/binary"
	"fmt"

	criusa "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-sa"
	"google.golang.org/protobuf/proto"
)

// NumSignals is the number of signals on x86-64, numbered 1..NumSignals.
const NumSignals = 64

// SigactionSize is the size of the kernel's struct sigaction on x86-64,
// with the 8-byte sigset rt_sigaction takes.
const SigactionSize = 32

// Signals whose disposition the kernel does not let anyone change.
const (
	sigKill = 9
	sigStop = 19
)

// KernelSigaction is the raw struct the rt_sigaction syscall reads and
// writes on x86-64.
type KernelSigaction struct {
	Handler  uint64 // SIG_DFL (0), SIG_IGN (1) or a handler address
	Flags    uint64 // SA_*
	Restorer uint64 // sa_restorer, used when Flags has SA_RESTORER
	Mask     uint64 // signals blocked while the handler runs; bit n-1 is signal n
}

// words lists a's fields in the kernel's order.
func (a *KernelSigaction) words() []*uint64 {
	return []*uint64{&a.Handler, &a.Flags, &a.Restorer, &a.Mask}
}

// Marshal encodes a as the SigactionSize bytes rt_sigaction expects.
func (a KernelSigaction) Marshal() []byte {
	b := make([]byte, 0, SigactionSize)
	for _, w := range a.words() {
		b = binary.LittleEndian.AppendUint64(b, *w)
	}
	return b
}

// UnmarshalSigaction decodes the SigactionSize bytes rt_sigaction wrote.
func UnmarshalSigaction(b []byte) (KernelSigaction, error) {
	var a KernelSigaction
	if len(b) != SigactionSize {
		return a, fmt.Errorf("sigaction: %d bytes, want %d", len(b), SigactionSize)
	}
	for i, w := range a.words() {
		*w = binary.LittleEndian.Uint64(b[8*i:])
	}
	return a, nil
}

// saField pairs a field of KernelSigaction with its field in CRIU's entry.
type saField struct {
	name string // CRIU's field name, for errors
	img  **uint64
	raw  *uint64
}

// saFields lists every field of a next to its place in e.
func saFields(e *criusa.SaEntry, a *KernelSigaction) []saField {
	return []saField{
		{"sigaction", &e.Sigaction, &a.Handler},
		{"flags", &e.Flags, &a.Flags},
		{"restorer", &e.Restorer, &a.Restorer},
		{"mask", &e.Mask, &a.Mask},
	}
}

// ToImage converts a disposition into CRIU's entry.
func ToImage(a KernelSigaction) *criusa.SaEntry {
	e := &criusa.SaEntry{}
	for _, f := range saFields(e, &a) {
		*f.img = proto.Uint64(*f.raw)
	}
	return e
}

// FromImage converts CRIU's entry back into a disposition. It fails if a
// required field is missing, the entry belongs to a 32-bit task, or it
// blocks signals above 64, which x86-64 does not have.
func FromImage(e *criusa.SaEntry) (KernelSigaction, error) {
	var a KernelSigaction
	if e == nil {
		return a, fmt.Errorf("sigaction: %w", ErrMissingField)
	}
	if e.GetCompatSigaction() {
		return a, fmt.Errorf("sigaction compat_sigaction: %w", ErrCompat)
	}
	if m := e.GetMaskExtended(); m != 0 {
		return a, fmt.Errorf("sigaction mask_extended %#x: no signals above %d on x86-64", m, NumSignals)
	}
	for _, f := range saFields(e, &a) {
		if *f.img == nil {
			return KernelSigaction{}, fmt.Errorf("sigaction %s: %w", f.name, ErrMissingField)
		}
		*f.raw = **f.img
	}
	return a, nil
}

// Restorable reports whether signal sig's disposition can and must be set
// at restore: every signal 1..NumSignals except SIGKILL and SIGSTOP, which
// the kernel refuses to change.
func Restorable(sig int) bool {
	return sig >= 1 && sig <= NumSignals && sig != sigKill && sig != sigStop
}
