package cpu

import (
	"encoding/binary"
	"fmt"
)

// Markers of an XSAVE area in a signal frame (asm/sigcontext.h): the
// kernel restores the extended state from a frame only if the software
// bytes of the legacy region carry magic1 and the area ends in magic2;
// otherwise it restores the legacy region alone and resets the rest.
const (
	fpXStateMagic1 = 0x46505853
	fpXStateMagic2 = 0x46505845
	offSwReserved  = 464 // struct _fpx_sw_bytes in the legacy region
)

// XSave components whose state the kernel allocates per task, only once
// the task asked for them (AMX: XTILECFG, XTILEDATA): a task that has not
// may not restore a frame that includes them.
const dynamicFeatures = 1<<17 | 1<<18

// SigframeFormat is how this CPU's XSAVE areas go into a signal frame:
// which components, and the size of an area that holds them.
type SigframeFormat struct {
	features uint64
	size     int
}

// HostSigframe probes the format (CPUID leaf 0xD, a VM exit each): once,
// for many areas.
func HostSigframe() SigframeFormat {
	features, size := staticFeatures()
	return SigframeFormat{features, size}
}

// XState returns an XSAVE area, as PTRACE_GETREGSET NT_X86_XSTATE returns
// it, made into what rt_sigreturn restores in full: the software bytes
// set and magic2 appended. It is len(xs)+4 bytes or fewer: without AMX
// state in use, the area a task's frame may hold ends with the last
// component the kernel enables for every task.
func (f SigframeFormat) XState(xs []byte) ([]byte, error) {
	if len(xs) < xsaveMinSize {
		return nil, fmt.Errorf("xsave area of %d bytes: want at least %d", len(xs), xsaveMinSize)
	}
	le := binary.LittleEndian
	features, size := f.features, f.size
	if le.Uint64(xs[offXstateBv:])&dynamicFeatures != 0 || size > len(xs) || size < xsaveMinSize {
		features, size = features|dynamicFeatures, len(xs)
	}
	out := make([]byte, size+4)
	copy(out, xs[:size])
	sw := out[offSwReserved:]
	le.PutUint32(sw[0:], fpXStateMagic1)
	le.PutUint32(sw[4:], uint32(size+4)) // extended_size: the area and magic2
	le.PutUint64(sw[8:], features)
	le.PutUint32(sw[16:], uint32(size))
	clear(sw[20:48])
	le.PutUint32(out[size:], fpXStateMagic2)
	// The header's xstate_bv may not name components beyond the area.
	bv := le.Uint64(out[offXstateBv:]) & features
	le.PutUint64(out[offXstateBv:], bv)
	return out, nil
}

// staticFeatures returns the XSAVE components the CPU supports that the
// kernel enables for every task, and the size of a standard-format area
// that holds them (CPUID leaf 0xD).
func staticFeatures() (features uint64, size int) {
	if maxLeaf, _, _, _ := cpuid(0, 0); maxLeaf < 0xd {
		return featureFP | featureSSE, legacySize
	}
	lo, _, _, hi := cpuid(0xd, 0)
	supported := (uint64(hi)<<32 | uint64(lo)) &^ dynamicFeatures
	size = xsaveMinSize
	for bit := 2; bit < 64; bit++ {
		if supported&(1<<bit) == 0 {
			continue
		}
		n, off, _, _ := cpuid(0xd, uint32(bit))
		size = max(size, int(off+n))
	}
	return supported, size
}
