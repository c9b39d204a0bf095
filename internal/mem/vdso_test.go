package mem

import (
	"encoding/binary"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"google.golang.org/protobuf/proto"
)

// TestProxyPlace: this kernel's vdso block goes to the highest free
// range below the dumped vdso with a megabyte free on either side, out
// of the scratch area, never above the dumped vdso.
func TestProxyPlace(t *testing.T) {
	v := func(s, e uint64) *vma.VmaEntry { return &vma.VmaEntry{Start: proto.Uint64(s), End: proto.Uint64(e)} }
	const vdso = 0x7fd1f713d000
	vmas := []*vma.VmaEntry{v(0x400000, 0x500000), v(0x7fd100000000, 0x7fd1f7100000), v(vdso, vdso+0x2000),
		v(0x7ffd00000000, 0x7ffd00021000)}
	scratch := Run{0x7fd0f0000000, 0x7fd100000000}
	to, err := proxyPlace(vmas, scratch, vdso, 0x6000)
	if err != nil {
		t.Fatal(err)
	}
	// The gap right below the vdso (0x3d000) is too small, the big
	// mapping and the scratch area are taken: below them, then.
	if want := scratch.Start - 1<<20 - 0x6000; to != want {
		t.Errorf("placed at %#x, want %#x", to, want)
	}
	if to+0x6000 > vdso {
		t.Errorf("placed at %#x, above the dumped vdso %#x", to, uint64(vdso))
	}
	if _, err := proxyPlace([]*vma.VmaEntry{v(1<<32, vdso)}, Run{}, vdso, 0x6000); err == nil {
		t.Errorf("a layout without room: no error")
	}
}

// TestPatchedVdso: this kernel's vdso patched onto itself, as if it
// were another's: every entry point jumps to the function of its name
// at the new place; a name the kernel's vdso lacks returns -ENOSYS.
func TestPatchedVdso(t *testing.T) {
	code, err := KernelVdso()
	if err != nil || code == nil {
		t.Skipf("no vdso here: %v", err)
	}
	entries, err := vdsoEntries(code)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := entries["__vdso_clock_gettime"]; !ok {
		t.Fatalf("no __vdso_clock_gettime among %v", entries)
	}
	if err := sameEntries(entries, entries); err != nil {
		t.Errorf("a vdso against itself: %v", err)
	}
	kernel := map[string]vdsoEntry{}
	for name, e := range entries {
		if name != "__vdso_time" && name != "time" {
			kernel[name] = vdsoEntry{e.off + 0x10, e.size}
		}
	}
	if err := sameEntries(entries, kernel); err == nil {
		t.Errorf("entries moved: no difference found")
	}
	const at = 0x7f0000000000
	out, missing, err := patchedVdso(code, entries, kernel, at)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 1 || missing[0] != "time" {
		t.Errorf("missing %v, want [time]", missing)
	}
	e := entries["__vdso_clock_gettime"]
	if out[e.off] != 0x48 || out[e.off+1] != 0xb8 || binary.LittleEndian.Uint64(out[e.off+2:]) != at+e.off+0x10 ||
		out[e.off+10] != 0xff || out[e.off+11] != 0xe0 {
		t.Errorf("clock_gettime patched as % x", out[e.off:e.off+12])
	}
	if e := entries["__vdso_time"]; out[e.off] != 0x48 || out[e.off+1] != 0xc7 || out[e.off+7] != 0xc3 {
		t.Errorf("time patched as % x", out[e.off:e.off+8])
	}
}
