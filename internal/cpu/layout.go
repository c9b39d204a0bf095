package cpu

import corex86 "github.com/checkpoint-restore/go-criu/v8/crit/images/core-x86"

// XSAVE state-component bits of xstate_bv (Intel SDM vol. 1, 13.1).
const (
	featureFP      = 1 << 0
	featureSSE     = 1 << 1
	featureYMM     = 1 << 2
	featureBndRegs = 1 << 3
	featureBndCsr  = 1 << 4
	featureOpmask  = 1 << 5
	featureZmmHi   = 1 << 6
	featureHi16Zmm = 1 << 7
	featurePKRU    = 1 << 9
)

// Layout is where each XSAVE component CRIU's image carries lies in a
// standard-format (non-compacted) XSAVE area. The CPU defines these
// offsets (CPUID leaf 0xD) and vendors differ: AMD CPUs with AVX-512 have
// no MPX and pack opmask at 832 where Intel puts it at 1088. An offset of
// 0 means the CPU has no such component.
type Layout struct {
	YMM      int // AVX: upper halves of ymm0..15
	BndRegs  int // MPX: bnd0..3
	BndCsr   int // MPX: bndcfgu, bndstatus
	Opmask   int // AVX-512: k0..7
	ZmmHi256 int // AVX-512: upper halves of zmm0..15
	Hi16Zmm  int // AVX-512: zmm16..31
	PKRU     int // protection keys
}

// IntelLayout returns the offsets of Intel CPUs, which are also those of
// CRIU's struct xsave_struct. AMD CPUs with AVX-512 differ; see HostLayout.
func IntelLayout() Layout {
	return Layout{
		YMM: 576, BndRegs: 960, BndCsr: 1024,
		Opmask: 1088, ZmmHi256: 1152, Hi16Zmm: 1664, PKRU: 2688,
	}
}

// component is one XSAVE component as the image carries it.
type component struct {
	name  string // CRIU's field name, for errors
	bit   uint64 // its xstate_bv bit
	off   int    // offset in the area; 0 if the CPU lacks it
	size  int    // bytes the image carries (for bndcsr, less than the component)
	field words
}

// components lists the components of l in xstate_bv order.
func (l Layout) components() []component {
	type x = corex86.UserX86XsaveEntry
	return []component{
		{"ymmh_space", featureYMM, l.YMM, 256, u32s(func(e *x) *[]uint32 { return &e.YmmhSpace })},
		{"bndreg_state", featureBndRegs, l.BndRegs, 64, u64s(func(e *x) *[]uint64 { return &e.BndregState })},
		{"bndcsr_state", featureBndCsr, l.BndCsr, 16, u64s(func(e *x) *[]uint64 { return &e.BndcsrState })},
		{"opmask_reg", featureOpmask, l.Opmask, 64, u64s(func(e *x) *[]uint64 { return &e.OpmaskReg })},
		{"zmm_upper", featureZmmHi, l.ZmmHi256, 512, u64s(func(e *x) *[]uint64 { return &e.ZmmUpper })},
		{"hi16_zmm", featureHi16Zmm, l.Hi16Zmm, 1024, u64s(func(e *x) *[]uint64 { return &e.Hi16Zmm })},
		{"pkru", featurePKRU, l.PKRU, 8, u32s(func(e *x) *[]uint32 { return &e.Pkru })},
	}
}

// inside reports whether the component's bytes lie within an area of n
// bytes.
func (c component) inside(n int) bool {
	return c.off != 0 && c.off+c.size <= n
}

// bytes returns the component's slice of area; it must be inside.
func (c component) bytes(area []byte) []byte {
	return area[c.off : c.off+c.size]
}

// words is a repeated field of the xsave entry, of uint32 or uint64.
type words interface {
	count(e *corex86.UserX86XsaveEntry) int
	width() int
	decode(e *corex86.UserX86XsaveEntry, b []byte)
	encode(e *corex86.UserX86XsaveEntry, b []byte)
}

// u32s selects a repeated uint32 field of the entry.
type u32s func(*corex86.UserX86XsaveEntry) *[]uint32

func (f u32s) count(e *corex86.UserX86XsaveEntry) int        { return len(*f(e)) }
func (f u32s) width() int                                    { return 4 }
func (f u32s) decode(e *corex86.UserX86XsaveEntry, b []byte) { *f(e) = getU32s(b) }
func (f u32s) encode(e *corex86.UserX86XsaveEntry, b []byte) { putU32s(b, *f(e)) }

// u64s selects a repeated uint64 field of the entry.
type u64s func(*corex86.UserX86XsaveEntry) *[]uint64

func (f u64s) count(e *corex86.UserX86XsaveEntry) int        { return len(*f(e)) }
func (f u64s) width() int                                    { return 8 }
func (f u64s) decode(e *corex86.UserX86XsaveEntry, b []byte) { *f(e) = getU64s(b) }
func (f u64s) encode(e *corex86.UserX86XsaveEntry, b []byte) { putU64s(b, *f(e)) }
