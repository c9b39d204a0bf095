package restore

import (
	"strings"
	"testing"

	"amber/internal/idmap"
	"amber/internal/plan"
)

// TestOuterOwner: the ids of a chown amber makes for a task are turned
// into amber's view through the namespace's maps, -1 stays -1, and an id
// the namespace does not map is an error naming it.
func TestOuterOwner(t *testing.T) {
	users := &idmap.Pair{Uid: idmap.Map{{First: 0, Lower: 100000, Count: 65536}}, Gid: idmap.Map{{First: 0, Lower: 200000, Count: 10}}}
	for _, c := range []struct {
		u, g         uint64
		uid, gid     int
		err          string
		withoutUsers bool
	}{
		{u: 0, g: 0, uid: 100000, gid: 200000},
		{u: 1000, g: 9, uid: 101000, gid: 200009},
		{u: uint64(noID), g: 5, uid: -1, gid: 200005},
		{u: 7, g: uint64(noID), uid: 100007, gid: -1},
		{u: 70000, g: 0, err: "uid 70000"},
		{u: 0, g: 10, err: "gid 10"},
		{u: 1000, g: 1000, uid: 1000, gid: 1000, withoutUsers: true},
	} {
		us := users
		if c.withoutUsers {
			us = nil
		}
		uid, gid, err := outerOwner(us, c.u, c.g)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%d:%d: error %v, want one naming %s", c.u, c.g, err, c.err)
			}
			continue
		}
		if err != nil || uid != c.uid || gid != c.gid {
			t.Errorf("%d:%d: %d:%d (%v), want %d:%d", c.u, c.g, uid, gid, err, c.uid, c.gid)
		}
	}
}

// TestProgString reads the arguments of amber's calls out of the scratch
// area, and refuses addresses outside it.
func TestProgString(t *testing.T) {
	b := plan.NewBuilder(0x100000000, plan.PageSize)
	s := b.String("/a/socket")
	v := b.Bytes([]byte{1, 2, 3, 4})
	p := b.Finish()
	if got, err := progString(p, s); err != nil || got != "/a/socket" {
		t.Errorf("string: %q (%v)", got, err)
	}
	if got, err := progBytes(p, v, 4); err != nil || string(got) != "\x01\x02\x03\x04" {
		t.Errorf("bytes: %q (%v)", got, err)
	}
	if _, err := progString(p, p.Base-1); err == nil {
		t.Error("a string before the scratch area was read")
	}
	if _, err := progBytes(p, p.Base+uint64(len(p.Image))-2, 4); err == nil {
		t.Error("bytes past the scratch area were read")
	}
}
