package cpu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	corex86 "github.com/checkpoint-restore/go-criu/v8/crit/images/core-x86"
)

// region is a span of the XSAVE area that the image carries. Offsets are
// written out from the SDM on purpose, independently of the package's
// constants.
type region struct {
	name      string
	off, size int
}

// intelRegions lists the carried spans of an Intel standard-format area.
func intelRegions() []region {
	return []region{
		{"st_space", 32, 128}, {"xmm_space", 160, 256}, {"padding", 416, 96},
		{"ymmh_space", 576, 256}, {"bndreg_state", 960, 64}, {"bndcsr_state", 1024, 16},
		{"opmask_reg", 1088, 64}, {"zmm_upper", 1152, 512}, {"hi16_zmm", 1664, 1024},
		{"pkru", 2688, 8},
	}
}

// amdRegions lists the carried spans of an AMD Zen 4 area (no MPX).
func amdRegions() []region {
	return []region{
		{"st_space", 32, 128}, {"xmm_space", 160, 256}, {"padding", 416, 96},
		{"ymmh_space", 576, 256}, {"opmask_reg", 832, 64}, {"zmm_upper", 896, 512},
		{"hi16_zmm", 1408, 1024}, {"pkru", 2432, 8},
	}
}

func amdLayout() Layout {
	return Layout{YMM: 576, Opmask: 832, ZmmHi256: 896, Hi16Zmm: 1408, PKRU: 2432}
}

const (
	intelFullSize = 2696   // up to and including PKRU
	allUserBits   = 0x2ff  // x87, SSE, AVX, MPX, AVX-512, PKRU
	legacyBits    = 0x3    // x87, SSE
	amxBits       = 0x6000 // bits 17, 18: not carried by CRIU's image
)

// handBuilt returns an area of size bytes with known legacy scalars,
// pseudo-random bytes in every region that fits, and xstate_bv bv; every
// other byte is zero.
func handBuilt(regions []region, size int, bv uint64) []byte {
	le := binary.LittleEndian
	b := make([]byte, size)
	le.PutUint16(b[0:], 0x037f)
	le.PutUint16(b[2:], 0x3800)
	b[4] = 0xa5
	le.PutUint16(b[6:], 0x07ab)
	le.PutUint64(b[8:], 0x00007f0012345678)
	le.PutUint64(b[16:], 0x00007ffd87654321)
	le.PutUint32(b[24:], 0x1fa0)
	le.PutUint32(b[28:], 0x2ffff)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, r := range regions {
		for j := 0; j < r.size && r.off+j < size; j++ {
			b[r.off+j] = byte(rng.Uint32())
		}
	}
	if size >= 576 {
		le.PutUint64(b[512:], bv)
	}
	return b
}

// fieldBytes encodes the named repeated field of e back into bytes, or
// nil if it is empty.
func fieldBytes(e *corex86.UserX86FpregsEntry, name string) []byte {
	x := e.GetXsave()
	switch name {
	case "st_space":
		return le32(e.StSpace)
	case "xmm_space":
		return le32(e.XmmSpace)
	case "padding":
		return le32(e.Padding)
	case "ymmh_space":
		return le32(x.GetYmmhSpace())
	case "bndreg_state":
		return le64(x.GetBndregState())
	case "bndcsr_state":
		return le64(x.GetBndcsrState())
	case "opmask_reg":
		return le64(x.GetOpmaskReg())
	case "zmm_upper":
		return le64(x.GetZmmUpper())
	case "hi16_zmm":
		return le64(x.GetHi16Zmm())
	case "pkru":
		return le32(x.GetPkru())
	}
	panic("unknown field " + name)
}

func le32(v []uint32) []byte {
	var b []byte
	for _, w := range v {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	return b
}

func le64(v []uint64) []byte {
	var b []byte
	for _, w := range v {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return b
}

// checkRegions verifies that each region of b that fits in n bytes is in
// e byte for byte, and that the others are absent.
func checkRegions(t *testing.T, e *corex86.UserX86FpregsEntry, b []byte, regions []region, n int) {
	t.Helper()
	for _, r := range regions {
		got := fieldBytes(e, r.name)
		if r.off+r.size > n {
			if got != nil {
				t.Errorf("%s: set although bytes %d..%d are outside %d", r.name, r.off, r.off+r.size, n)
			}
			continue
		}
		if !bytes.Equal(got, b[r.off:r.off+r.size]) {
			t.Errorf("%s: does not match bytes %d..%d", r.name, r.off, r.off+r.size)
		}
	}
}

func TestXSaveToImageKnownOffsets(t *testing.T) {
	b := handBuilt(intelRegions(), intelFullSize, allUserBits)
	e, err := XSaveToImage(b)
	if err != nil {
		t.Fatal(err)
	}
	scalars := []struct {
		name      string
		got, want uint64
	}{
		{"cwd", uint64(e.GetCwd()), 0x037f}, {"swd", uint64(e.GetSwd()), 0x3800},
		{"twd", uint64(e.GetTwd()), 0xa5}, {"fop", uint64(e.GetFop()), 0x07ab},
		{"rip", e.GetRip(), 0x00007f0012345678}, {"rdp", e.GetRdp(), 0x00007ffd87654321},
		{"mxcsr", uint64(e.GetMxcsr()), 0x1fa0}, {"mxcsr_mask", uint64(e.GetMxcsrMask()), 0x2ffff},
		{"xstate_bv", e.GetXsave().GetXstateBv(), allUserBits},
	}
	for _, s := range scalars {
		if s.got != s.want {
			t.Errorf("%s = %#x, want %#x", s.name, s.got, s.want)
		}
	}
	checkRegions(t, e, b, intelRegions(), len(b))
}

func TestXSaveRoundTrip(t *testing.T) {
	b := handBuilt(intelRegions(), intelFullSize, allUserBits)
	e, err := XSaveToImage(b)
	if err != nil {
		t.Fatal(err)
	}
	if e, err = reparse(e, &corex86.UserX86FpregsEntry{}); err != nil {
		t.Fatalf("marshal through proto: %v", err)
	}
	got, err := XSaveFromImage(e, len(b))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b) {
		t.Errorf("round trip differs at byte %d", firstDiff(got, b))
	}
	// A larger kernel area (say with AMX) gets the same bytes, then zeros.
	big, err := XSaveFromImage(e, 11008)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(big[:len(b)], b) || firstDiff(big[len(b):], make([]byte, len(big)-len(b))) >= 0 {
		t.Error("larger area: not the same bytes followed by zeros")
	}
}

// firstDiff returns the first index where a and b differ, or -1.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

func TestXSaveToImageTruncated(t *testing.T) {
	full := handBuilt(intelRegions(), intelFullSize, allUserBits)
	for _, n := range []int{0, 100, 511, 513, 519, 575} {
		if _, err := XSaveToImage(full[:n]); err == nil {
			t.Errorf("%d bytes accepted", n)
		}
	}
	for _, n := range []int{512, 576, 831, 832, 1040, 1100, 2687, 2695, intelFullSize} {
		e, err := XSaveToImage(full[:n])
		if err != nil {
			t.Errorf("%d bytes: %v", n, err)
			continue
		}
		if (e.Xsave != nil) != (n > 512) {
			t.Errorf("%d bytes: xsave set = %v", n, e.Xsave != nil)
		}
		checkRegions(t, e, full, intelRegions(), n)
	}
}

func TestXSaveToImageCompacted(t *testing.T) {
	b := handBuilt(intelRegions(), intelFullSize, allUserBits)
	binary.LittleEndian.PutUint64(b[520:], 1<<63|allUserBits)
	if _, err := XSaveToImage(b); err == nil || !strings.Contains(err.Error(), "xcomp_bv") {
		t.Errorf("compacted area: err = %v, want one naming xcomp_bv", err)
	}
}

// fullEntry returns the entry of a hand-built full Intel area.
func fullEntry(t *testing.T) (*corex86.UserX86FpregsEntry, []byte) {
	t.Helper()
	b := handBuilt(intelRegions(), intelFullSize, allUserBits)
	e, err := XSaveToImage(b)
	if err != nil {
		t.Fatal(err)
	}
	return e, b
}

func TestXSaveFromImageComponentDoesNotFit(t *testing.T) {
	e, _ := fullEntry(t)
	for _, c := range []struct {
		size int
		name string
	}{{1100, "opmask_reg"}, {2000, "hi16_zmm"}, {2690, "pkru"}} {
		_, err := XSaveFromImage(e, c.size)
		if !errors.Is(err, ErrUnsupportedXState) || !strings.Contains(err.Error(), c.name) {
			t.Errorf("size %d: err = %v, want ErrUnsupportedXState naming %s", c.size, err, c.name)
		}
	}
}

func TestXSaveFromImageInitComponentDropped(t *testing.T) {
	e, b := fullEntry(t)
	// PKRU in its initial state need not fit: XRSTOR would reset it anyway.
	e.Xsave.XstateBv = new(uint64(allUserBits &^ featurePKRU))
	got, err := XSaveFromImage(e, 2688)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(b[:2688])
	binary.LittleEndian.PutUint64(want[512:], allUserBits&^featurePKRU)
	if i := firstDiff(got, want); i >= 0 {
		t.Errorf("differs at byte %d", i)
	}
}

func TestXSaveFromImageMissingComponent(t *testing.T) {
	e, b := fullEntry(t)
	e.Xsave.Hi16Zmm = nil
	e.Xsave.XstateBv = new(uint64(allUserBits | amxBits))
	got, err := XSaveFromImage(e, len(b))
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(b)
	clear(want[1664:2688])
	binary.LittleEndian.PutUint64(want[512:], allUserBits&^featureHi16Zmm)
	if i := firstDiff(got, want); i >= 0 {
		t.Errorf("differs at byte %d", i)
	}
}

func TestXSaveFromImageWrongLength(t *testing.T) {
	e, b := fullEntry(t)
	e.Xsave.YmmhSpace = e.Xsave.YmmhSpace[:10]
	if _, err := XSaveFromImage(e, len(b)); err == nil || !strings.Contains(err.Error(), "ymmh_space") {
		t.Errorf("short ymmh_space: err = %v", err)
	}
	e, _ = fullEntry(t)
	e.Xsave.XstateBv = nil
	if _, err := XSaveFromImage(e, len(b)); !errors.Is(err, ErrMissingField) || !strings.Contains(err.Error(), "xstate_bv") {
		t.Errorf("no xstate_bv: err = %v", err)
	}
}

func TestXSaveFromImageLegacyErrors(t *testing.T) {
	full, b := fullEntry(t)
	fields := requiredFields(full)
	if len(fields) != 8 {
		t.Fatalf("%d required fields, want 8", len(fields))
	}
	for _, fd := range fields {
		_, err := XSaveFromImage(without(full, fd), len(b))
		if !errors.Is(err, ErrMissingField) || !strings.Contains(err.Error(), string(fd.Name())) {
			t.Errorf("without %s: err = %v", fd.Name(), err)
		}
	}
	bad := []struct {
		name  string
		spoil func(e *corex86.UserX86FpregsEntry)
	}{
		{"cwd", func(e *corex86.UserX86FpregsEntry) { e.Cwd = new(uint32(0x10000)) }},
		{"twd", func(e *corex86.UserX86FpregsEntry) { e.Twd = new(uint32(0x100)) }},
		{"st_space", func(e *corex86.UserX86FpregsEntry) { e.StSpace = e.StSpace[:31] }},
		{"xmm_space", func(e *corex86.UserX86FpregsEntry) { e.XmmSpace = append(e.XmmSpace, 1) }},
		{"padding", func(e *corex86.UserX86FpregsEntry) { e.Padding = e.Padding[:5] }},
	}
	for _, c := range bad {
		e, _ := fullEntry(t)
		c.spoil(e)
		if _, err := XSaveFromImage(e, len(b)); err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("bad %s: err = %v", c.name, err)
		}
	}
}

func TestXSaveFromImageNoPadding(t *testing.T) {
	e, b := fullEntry(t)
	e.Padding = nil
	got, err := XSaveFromImage(e, len(b))
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(b)
	clear(want[416:512])
	if i := firstDiff(got, want); i >= 0 {
		t.Errorf("differs at byte %d", i)
	}
}

func TestXSaveLegacyOnly(t *testing.T) {
	b := handBuilt(intelRegions(), 512, 0)
	e, err := XSaveToImage(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := XSaveFromImage(e, 512)
	if err != nil || !bytes.Equal(got, b) {
		t.Errorf("512-byte round trip: err %v, differs at %d", err, firstDiff(got, b))
	}
	// On an XSAVE machine the legacy state must be marked in use, or the
	// kernel would reset it instead of loading it.
	got, err = XSaveFromImage(e, 832)
	if err != nil {
		t.Fatal(err)
	}
	if bv := binary.LittleEndian.Uint64(got[512:]); bv != legacyBits || !bytes.Equal(got[:512], b) {
		t.Errorf("xstate_bv = %#x, want %#x, legacy equal = %v", bv, legacyBits, bytes.Equal(got[:512], b))
	}
}

func TestXSaveFromImageBadSize(t *testing.T) {
	e, _ := fullEntry(t)
	for _, size := range []int{-1, 0, 511, 512, 575} {
		if _, err := XSaveFromImage(e, size); err == nil {
			t.Errorf("size %d accepted for an entry with an xsave part", size)
		}
	}
	if _, err := XSaveFromImage(nil, 4096); !errors.Is(err, ErrMissingField) {
		t.Errorf("nil entry: err = %v", err)
	}
}

func TestXSaveAMDLayout(t *testing.T) {
	const size = 2440
	b := handBuilt(amdRegions(), size, allUserBits&^(featureBndRegs|featureBndCsr))
	e, err := amdLayout().XSaveToImage(b)
	if err != nil {
		t.Fatal(err)
	}
	checkRegions(t, e, b, amdRegions(), size)
	if e.Xsave.BndregState != nil || e.Xsave.BndcsrState != nil {
		t.Error("MPX filled on a layout without it")
	}
	got, err := amdLayout().XSaveFromImage(e, size)
	if err != nil || !bytes.Equal(got, b) {
		t.Errorf("round trip: err %v, differs at %d", err, firstDiff(got, b))
	}
}

func TestXSaveFromImageComponentNotInLayout(t *testing.T) {
	e, _ := fullEntry(t) // from Intel, MPX bits set
	_, err := amdLayout().XSaveFromImage(e, 2440)
	if !errors.Is(err, ErrUnsupportedXState) || !strings.Contains(err.Error(), "bndreg_state") {
		t.Errorf("err = %v, want ErrUnsupportedXState naming bndreg_state", err)
	}
}

// TestXSaveFromImageComponentInitial: a component the CPU lacks but
// the image holds in its initial state (all zeroes, its bit set) is left
// out, as if not in use; with any value in it, refused.
func TestXSaveFromImageComponentInitial(t *testing.T) {
	e, _ := fullEntry(t) // from Intel, MPX bits set
	for i := range e.Xsave.BndregState {
		e.Xsave.BndregState[i] = 0
	}
	for i := range e.Xsave.BndcsrState {
		e.Xsave.BndcsrState[i] = 0
	}
	b, err := amdLayout().XSaveFromImage(e, 2440)
	if err != nil {
		t.Fatalf("MPX state all zeroes: %v", err)
	}
	if bv := binary.LittleEndian.Uint64(b[offXstateBv:]); bv&(featureBndRegs|featureBndCsr) != 0 {
		t.Errorf("xstate_bv %#x keeps the MPX bits", bv)
	}
	e.Xsave.BndcsrState[1] = 1
	if _, err := amdLayout().XSaveFromImage(e, 2440); !errors.Is(err, ErrUnsupportedXState) || !strings.Contains(err.Error(), "bndcsr_state") {
		t.Errorf("MPX state with a value: err = %v, want ErrUnsupportedXState naming bndcsr_state", err)
	}
}

func TestHostLayout(t *testing.T) {
	l := HostLayout()
	t.Logf("host layout: %+v", l)
	if l.YMM != 0 && l.YMM != 576 {
		t.Errorf("YMM at %d, architecturally 576", l.YMM)
	}
	_, b, c, d := cpuid(0, 0)
	if string(le32([]uint32{b, d, c})) != "GenuineIntel" {
		t.Skip("not an Intel CPU")
	}
	intel := IntelLayout().components()
	for i, c := range l.components() {
		if c.off != 0 && c.off != intel[i].off {
			t.Errorf("%s at %d, Intel puts it at %d", c.name, c.off, intel[i].off)
		}
	}
}
