package cpu

import (
	"encoding/binary"
	"fmt"

	corex86 "github.com/checkpoint-restore/go-criu/v8/crit/images/core-x86"
	"google.golang.org/protobuf/proto"
)

// Offsets in the legacy FXSAVE region (Intel SDM vol. 1, table 10-2).
const (
	offCwd       = 0
	offSwd       = 2
	offTwd       = 4 // abridged tag: one byte, the next is reserved
	offFop       = 6
	offRip       = 8
	offRdp       = 16
	offMxcsr     = 24
	offMxcsrMask = 28
	offSt        = 32  // 8 x87 registers, 16 bytes each
	offXmm       = 160 // 16 xmm registers
	offPadding   = 416 // reserved; 464..511 belong to software
	legacySize   = 512

	nSt      = (offXmm - offSt) / 4
	nXmm     = (offPadding - offXmm) / 4
	nPadding = (legacySize - offPadding) / 4
)

// legacyToImage reads the FXSAVE region b (at least 512 bytes).
func legacyToImage(b []byte) *corex86.UserX86FpregsEntry {
	le := binary.LittleEndian
	return &corex86.UserX86FpregsEntry{
		Cwd:       proto.Uint32(uint32(le.Uint16(b[offCwd:]))),
		Swd:       proto.Uint32(uint32(le.Uint16(b[offSwd:]))),
		Twd:       proto.Uint32(uint32(b[offTwd])),
		Fop:       proto.Uint32(uint32(le.Uint16(b[offFop:]))),
		Rip:       proto.Uint64(le.Uint64(b[offRip:])),
		Rdp:       proto.Uint64(le.Uint64(b[offRdp:])),
		Mxcsr:     proto.Uint32(le.Uint32(b[offMxcsr:])),
		MxcsrMask: proto.Uint32(le.Uint32(b[offMxcsrMask:])),
		StSpace:   getU32s(b[offSt:offXmm]),
		XmmSpace:  getU32s(b[offXmm:offPadding]),
		Padding:   getU32s(b[offPadding:legacySize]),
	}
}

// legacyFromImage writes e's FXSAVE fields into b (at least 512 bytes).
func legacyFromImage(e *corex86.UserX86FpregsEntry, b []byte) error {
	for _, s := range legacyScalars(e) {
		if err := s.put(b); err != nil {
			return err
		}
	}
	if err := putExact(b[offSt:], "st_space", e.StSpace, nSt); err != nil {
		return err
	}
	if err := putExact(b[offXmm:], "xmm_space", e.XmmSpace, nXmm); err != nil {
		return err
	}
	// Older images may lack the padding; the kernel ignores it anyway.
	if len(e.Padding) == 0 {
		return nil
	}
	return putExact(b[offPadding:], "padding", e.Padding, nPadding)
}

// scalar is one fixed-width field of the legacy region, read from the
// entry.
type scalar struct {
	name  string
	off   int
	width int // bytes
	set   bool
	v     uint64
}

// legacyScalars lists e's scalar fields with their place in the region.
func legacyScalars(e *corex86.UserX86FpregsEntry) []scalar {
	return []scalar{
		{"cwd", offCwd, 2, e.Cwd != nil, uint64(e.GetCwd())},
		{"swd", offSwd, 2, e.Swd != nil, uint64(e.GetSwd())},
		{"twd", offTwd, 1, e.Twd != nil, uint64(e.GetTwd())},
		{"fop", offFop, 2, e.Fop != nil, uint64(e.GetFop())},
		{"rip", offRip, 8, e.Rip != nil, e.GetRip()},
		{"rdp", offRdp, 8, e.Rdp != nil, e.GetRdp()},
		{"mxcsr", offMxcsr, 4, e.Mxcsr != nil, uint64(e.GetMxcsr())},
		{"mxcsr_mask", offMxcsrMask, 4, e.MxcsrMask != nil, uint64(e.GetMxcsrMask())},
	}
}

// put writes s into b, refusing a missing field or a value too wide for
// its slot: the image stores 16-bit fields in uint32s, so a wider value
// means a corrupt image.
func (s scalar) put(b []byte) error {
	if !s.set {
		return fmt.Errorf("fpregs %s: %w", s.name, ErrMissingField)
	}
	if s.width < 8 && s.v>>(8*s.width) != 0 {
		return fmt.Errorf("fpregs %s: value %#x does not fit in %d bytes", s.name, s.v, s.width)
	}
	le := binary.LittleEndian
	switch s.width {
	case 1:
		b[s.off] = byte(s.v)
	case 2:
		le.PutUint16(b[s.off:], uint16(s.v))
	case 4:
		le.PutUint32(b[s.off:], uint32(s.v))
	default:
		le.PutUint64(b[s.off:], s.v)
	}
	return nil
}

// putExact writes v into b after checking it has exactly n words, as the
// register file it describes has.
func putExact(b []byte, name string, v []uint32, n int) error {
	if len(v) != n {
		return fmt.Errorf("fpregs %s: %d words, want %d", name, len(v), n)
	}
	putU32s(b, v)
	return nil
}
