package cpu

import "math/bits"

// cpuid executes the CPUID instruction.
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// HostLayout reads the XSAVE component offsets of the CPU it runs on from
// CPUID leaf 0xD. Components the CPU does not support get offset 0. Dump
// and restore should each use the layout of their own machine; the image
// itself does not depend on it.
func HostLayout() Layout {
	if maxLeaf, _, _, _ := cpuid(0, 0); maxLeaf < 0xd {
		return Layout{}
	}
	supported, _, _, _ := cpuid(0xd, 0)
	offset := func(bit uint64) int {
		if uint64(supported)&bit == 0 {
			return 0
		}
		_, off, _, _ := cpuid(0xd, uint32(bits.TrailingZeros64(bit)))
		return int(off)
	}
	return Layout{
		YMM: offset(featureYMM), BndRegs: offset(featureBndRegs),
		BndCsr: offset(featureBndCsr), Opmask: offset(featureOpmask),
		ZmmHi256: offset(featureZmmHi), Hi16Zmm: offset(featureHi16Zmm),
		PKRU: offset(featurePKRU),
	}
}
