package cpu

import (
	"bytes"
	"encoding/binary"
	"fmt"

	corex86 "github.com/checkpoint-restore/go-criu/v8/crit/images/core-x86"
	"google.golang.org/protobuf/proto"
)

// The XSAVE header follows the legacy region.
const (
	offXstateBv  = 512
	offXcompBv   = 520
	xsaveMinSize = 576 // legacy region and the 64-byte header
)

// XSaveToImage converts a standard-format XSAVE area, as PTRACE_GETREGSET
// NT_X86_XSTATE returns it, into CRIU's fpregs entry, assuming Intel's
// component offsets (IntelLayout). Use Layout.XSaveToImage with HostLayout
// on CPUs that may differ.
func XSaveToImage(xsave []byte) (*corex86.UserX86FpregsEntry, error) {
	return IntelLayout().XSaveToImage(xsave)
}

// XSaveFromImage builds a standard-format XSAVE area of exactly size bytes
// from CRIU's fpregs entry, assuming Intel's component offsets
// (IntelLayout). See Layout.XSaveFromImage.
func XSaveFromImage(e *corex86.UserX86FpregsEntry, size int) ([]byte, error) {
	return IntelLayout().XSaveFromImage(e, size)
}

// XSaveToImage converts a standard-format XSAVE area laid out as l into
// CRIU's fpregs entry. An area of exactly 512 bytes is a bare FXSAVE
// region and yields no xsave part. Each component is filled only if its
// bytes lie within the area, since the kernel sizes the area for the
// features it enabled.
func (l Layout) XSaveToImage(xsave []byte) (*corex86.UserX86FpregsEntry, error) {
	if len(xsave) < legacySize {
		return nil, fmt.Errorf("xsave area: %d bytes, want at least %d", len(xsave), legacySize)
	}
	e := legacyToImage(xsave)
	if len(xsave) == legacySize {
		return e, nil
	}
	x, err := l.extendedToImage(xsave)
	if err != nil {
		return nil, err
	}
	e.Xsave = x
	return e, nil
}

// extendedToImage reads the header and components following the legacy
// region.
func (l Layout) extendedToImage(xsave []byte) (*corex86.UserX86XsaveEntry, error) {
	if len(xsave) < xsaveMinSize {
		return nil, fmt.Errorf("xsave header: area of %d bytes is truncated, want at least %d", len(xsave), xsaveMinSize)
	}
	// A compacted area puts components elsewhere; reading it with
	// standard offsets would silently scramble registers.
	if xcomp := binary.LittleEndian.Uint64(xsave[offXcompBv:]); xcomp != 0 {
		return nil, fmt.Errorf("xsave xcomp_bv %#x: compacted format is not supported", xcomp)
	}
	x := &corex86.UserX86XsaveEntry{
		XstateBv: proto.Uint64(binary.LittleEndian.Uint64(xsave[offXstateBv:])),
	}
	for _, c := range l.components() {
		if c.inside(len(xsave)) {
			c.field.decode(x, c.bytes(xsave))
		}
	}
	return x, nil
}

// XSaveFromImage builds a standard-format XSAVE area laid out as l, of
// exactly size bytes (the kernel's xstate size on the restoring machine),
// from CRIU's fpregs entry. size may be 512 for a bare FXSAVE region if the
// entry has no xsave part.
//
// A component is written only if the entry holds it and its xstate_bv bit
// is set; otherwise its bytes stay zero and its bit is cleared, which
// restores it to its initial state exactly as XRSTOR would for a clear
// bit. A component to be written that lies outside size, or that the CPU
// lacks, is an error wrapping ErrUnsupportedXState. xcomp_bv and the rest
// of the header are zero, and the entry's padding goes to bytes 416..511 as
// is.
func (l Layout) XSaveFromImage(e *corex86.UserX86FpregsEntry, size int) ([]byte, error) {
	if e == nil {
		return nil, fmt.Errorf("fpregs: %w", ErrMissingField)
	}
	if size < legacySize {
		return nil, fmt.Errorf("xsave area: size %d, want at least %d", size, legacySize)
	}
	b := make([]byte, size)
	if err := legacyFromImage(e, b); err != nil {
		return nil, err
	}
	if size < xsaveMinSize {
		if e.Xsave != nil {
			return nil, fmt.Errorf("xsave header: does not fit in an area of %d bytes", size)
		}
		return b, nil
	}
	bv, err := l.extendedFromImage(e.Xsave, b)
	if err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint64(b[offXstateBv:], bv)
	return b, nil
}

// extendedFromImage writes x's components into b and returns the
// xstate_bv to put in the header.
func (l Layout) extendedFromImage(x *corex86.UserX86XsaveEntry, b []byte) (uint64, error) {
	// An image without an xsave part (from a CPU without XSAVE) still has
	// x87 and SSE state, which the kernel loads only if their bits are set.
	if x == nil {
		return featureFP | featureSSE, nil
	}
	if x.XstateBv == nil {
		return 0, fmt.Errorf("xsave xstate_bv: %w", ErrMissingField)
	}
	bv := x.GetXstateBv() & (featureFP | featureSSE)
	for _, c := range l.components() {
		if x.GetXstateBv()&c.bit == 0 || c.field.count(x) == 0 {
			continue
		}
		if c.off == 0 && c.initial(x) {
			// A component this CPU lacks, in its initial state: restored
			// the same with its bit clear (a CPU that marks unused MPX
			// state in use, as qemu's emulated one does).
			continue
		}
		if err := c.put(x, b); err != nil {
			return 0, err
		}
		bv |= c.bit
	}
	return bv, nil
}

// initial tells whether x holds the component in its initial state,
// all zeroes (the initial state of every component after SSE).
func (c component) initial(x *corex86.UserX86XsaveEntry) bool {
	if c.field.count(x)*c.field.width() != c.size {
		return false
	}
	b := make([]byte, c.size)
	c.field.encode(x, b)
	return bytes.Count(b, []byte{0}) == len(b)
}

// put writes the component's words from x into the area b.
func (c component) put(x *corex86.UserX86XsaveEntry, b []byte) error {
	if n, want := c.field.count(x), c.size/c.field.width(); n != want {
		return fmt.Errorf("xsave %s: %d words, want %d", c.name, n, want)
	}
	if c.off == 0 {
		return fmt.Errorf("xsave %s: not in this CPU's layout: %w", c.name, ErrUnsupportedXState)
	}
	if !c.inside(len(b)) {
		return fmt.Errorf("xsave %s: bytes %d..%d outside the %d-byte area: %w",
			c.name, c.off, c.off+c.size, len(b), ErrUnsupportedXState)
	}
	c.field.encode(x, c.bytes(b))
	return nil
}
