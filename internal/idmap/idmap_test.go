package idmap

import (
	"strings"
	"testing"
)

// TestMap: ids translate both ways by the extent that holds them; ids
// no extent holds are refused (Outer) or overflow (InnerUid), as the
// kernel shows them; a nil Pair is the identity.
func TestMap(t *testing.T) {
	m, err := Parse("         0     100000      65536\n    100000     300000         10\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := m.String(); got != "0 100000 65536\n100000 300000 10\n" {
		t.Fatalf("String: %q", got)
	}
	for _, tc := range []struct {
		outer, inner uint32
		ok           bool
	}{{100000, 0, true}, {165535, 65535, true}, {300009, 100009, true}, {165536, 0, false}, {0, 0, false}, {300010, 0, false}} {
		in, ok := m.Inner(tc.outer)
		if ok != tc.ok || ok && in != tc.inner {
			t.Errorf("Inner(%d) = %d, %v; want %d, %v", tc.outer, in, ok, tc.inner, tc.ok)
		}
		if !ok {
			continue
		}
		if out, ok := m.Outer(tc.inner); !ok || out != tc.outer {
			t.Errorf("Outer(%d) = %d, %v; want %d", tc.inner, out, ok, tc.outer)
		}
	}
	p := &Pair{Uid: m, Gid: m}
	if got := p.InnerUid(5); got != Overflow {
		t.Errorf("InnerUid of an unmapped id: %d, want %d", got, Overflow)
	}
	if _, err := p.OuterGid(70000); err == nil || !strings.Contains(err.Error(), "gid 70000") {
		t.Errorf("OuterGid of an unmapped id: %v", err)
	}
	var none *Pair
	if none.InnerUid(7) != 7 || none.InnerGid(8) != 8 {
		t.Error("a nil Pair changed an id")
	}
	if got := FromImage(m.ToImage()); got.String() != m.String() {
		t.Errorf("image round trip: %q", got.String())
	}
	for _, bad := range []string{"0 1", "0 x 1", "1 2 3 4"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}
