package signals

import (
	"encoding/binary"
	"fmt"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"google.golang.org/protobuf/proto"
)

// AltStackSize is the size of the kernel's stack_t on x86-64.
const AltStackSize = 24

// Offsets in stack_t; bytes 12..15 are padding.
const (
	offStackSp    = 0
	offStackFlags = 8
	offStackSize  = 16
)

// AltStack is the kernel's stack_t, the alternate signal stack of a thread
// as sigaltstack reads and writes it.
type AltStack struct {
	Sp    uint64 // ss_sp: lowest address of the stack
	Flags int32  // ss_flags: SS_ONSTACK, SS_DISABLE, SS_AUTODISARM
	Size  uint64 // ss_size
}

// Marshal encodes s as the AltStackSize bytes sigaltstack expects, with
// zero padding.
func (s AltStack) Marshal() []byte {
	b := make([]byte, AltStackSize)
	binary.LittleEndian.PutUint64(b[offStackSp:], s.Sp)
	binary.LittleEndian.PutUint32(b[offStackFlags:], uint32(s.Flags))
	binary.LittleEndian.PutUint64(b[offStackSize:], s.Size)
	return b
}

// UnmarshalAltStack decodes the AltStackSize bytes sigaltstack wrote,
// ignoring the padding.
func UnmarshalAltStack(b []byte) (AltStack, error) {
	if len(b) != AltStackSize {
		return AltStack{}, fmt.Errorf("stack_t: %d bytes, want %d", len(b), AltStackSize)
	}
	return AltStack{
		Sp:    binary.LittleEndian.Uint64(b[offStackSp:]),
		Flags: int32(binary.LittleEndian.Uint32(b[offStackFlags:])),
		Size:  binary.LittleEndian.Uint64(b[offStackSize:]),
	}, nil
}

// AltStackToImage converts s into CRIU's entry. CRIU stores ss_flags
// unsigned; the bits are kept as they are, so SS_AUTODISARM (bit 31)
// survives.
func AltStackToImage(s AltStack) *criucore.ThreadSasEntry {
	return &criucore.ThreadSasEntry{
		SsSp:    proto.Uint64(s.Sp),
		SsSize:  proto.Uint64(s.Size),
		SsFlags: proto.Uint32(uint32(s.Flags)),
	}
}

// AltStackFromImage converts CRIU's entry back into a stack_t. It fails
// if a required field is missing.
func AltStackFromImage(e *criucore.ThreadSasEntry) (AltStack, error) {
	switch {
	case e == nil:
		return AltStack{}, fmt.Errorf("sas: %w", ErrMissingField)
	case e.SsSp == nil:
		return AltStack{}, fmt.Errorf("sas ss_sp: %w", ErrMissingField)
	case e.SsSize == nil:
		return AltStack{}, fmt.Errorf("sas ss_size: %w", ErrMissingField)
	case e.SsFlags == nil:
		return AltStack{}, fmt.Errorf("sas ss_flags: %w", ErrMissingField)
	}
	return AltStack{Sp: *e.SsSp, Size: *e.SsSize, Flags: int32(*e.SsFlags)}, nil
}
