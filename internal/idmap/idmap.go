// Package idmap translates user and group ids between a user namespace
// and its parent by the extents of the namespace's uid_map and gid_map
// (/proc/PID/uid_map; CRIU's UidGidExtent of userns-ID.img): an extent
// maps Count ids from First inside to Lower outside.
//
// A dump of a tree in a user namespace of its own stores every id as
// the tree sees it (inside), as CRIU does: its credentials, which CRIU's
// parasite reads with getresuid inside the task, and the owners of
// files, which CRIU translates with userns_uid. amber reads them from
// its own side (/proc, stat) and turns them inward; a restore turns
// them outward again where amber, not a task of the tree, sets them.
package idmap

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/userns"
	"google.golang.org/protobuf/proto"
)

// Overflow is the id the kernel shows for an id a namespace does not
// map (fs.overflowuid and fs.overflowgid by default).
const Overflow = 65534

// Extent is one line of a uid_map or gid_map.
type Extent struct{ First, Lower, Count uint32 }

// Map is a uid_map or a gid_map.
type Map []Extent

// Parse reads the text of /proc/PID/uid_map or gid_map: lines of three
// numbers, first, lower first and count.
func Parse(text string) (Map, error) {
	var m Map
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("id map line %q: want 3 numbers", line)
		}
		var n [3]uint32
		for i, s := range f {
			v, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("id map line %q: %w", line, err)
			}
			n[i] = uint32(v)
		}
		m = append(m, Extent{n[0], n[1], n[2]})
	}
	return m, nil
}

// String is the map as uid_map and gid_map take it, in one write.
func (m Map) String() string {
	var b strings.Builder
	for _, e := range m {
		fmt.Fprintf(&b, "%d %d %d\n", e.First, e.Lower, e.Count)
	}
	return b.String()
}

// Inner is the id inside the namespace of outer, an id of its parent,
// and whether the namespace maps it.
func (m Map) Inner(outer uint32) (uint32, bool) {
	for _, e := range m {
		if outer >= e.Lower && outer-e.Lower < e.Count {
			return e.First + (outer - e.Lower), true
		}
	}
	return 0, false
}

// Outer is the id in the parent namespace of inner, an id inside, and
// whether the namespace maps it.
func (m Map) Outer(inner uint32) (uint32, bool) {
	for _, e := range m {
		if inner >= e.First && inner-e.First < e.Count {
			return e.Lower + (inner - e.First), true
		}
	}
	return 0, false
}

// ToImage is the map as userns-ID.img holds it.
func (m Map) ToImage() []*userns.UidGidExtent {
	out := make([]*userns.UidGidExtent, len(m))
	for i, e := range m {
		out[i] = &userns.UidGidExtent{First: proto.Uint32(e.First), LowerFirst: proto.Uint32(e.Lower), Count: proto.Uint32(e.Count)}
	}
	return out
}

// FromImage is the map of userns-ID.img's extents.
func FromImage(exts []*userns.UidGidExtent) Map {
	m := make(Map, len(exts))
	for i, e := range exts {
		m[i] = Extent{e.GetFirst(), e.GetLowerFirst(), e.GetCount()}
	}
	return m
}

// Pair is a user namespace's two maps. A nil *Pair is no namespace of
// the tree's own: every id is the same on both sides.
type Pair struct{ Uid, Gid Map }

// InnerUid is uid (amber's view) as the namespace sees it: Overflow if
// it does not map it, as the kernel shows it to the namespace.
func (p *Pair) InnerUid(uid uint32) uint32 {
	if p == nil {
		return uid
	}
	return orOverflow(p.Uid.Inner(uid))
}

// InnerGid is gid (amber's view) as the namespace sees it.
func (p *Pair) InnerGid(gid uint32) uint32 {
	if p == nil {
		return gid
	}
	return orOverflow(p.Gid.Inner(gid))
}

// OuterUid is uid, as the namespace sees it, in amber's view; an id
// the namespace does not map is an error naming it.
func (p *Pair) OuterUid(uid uint32) (uint32, error) {
	if p == nil {
		return uid, nil
	}
	if o, ok := p.Uid.Outer(uid); ok {
		return o, nil
	}
	return 0, fmt.Errorf("uid %d is not in the user namespace's uid_map (%s)", uid, strings.TrimSpace(p.Uid.String()))
}

// OuterGid is gid, as the namespace sees it, in amber's view.
func (p *Pair) OuterGid(gid uint32) (uint32, error) {
	if p == nil {
		return gid, nil
	}
	if o, ok := p.Gid.Outer(gid); ok {
		return o, nil
	}
	return 0, fmt.Errorf("gid %d is not in the user namespace's gid_map (%s)", gid, strings.TrimSpace(p.Gid.String()))
}

func orOverflow(id uint32, ok bool) uint32 {
	if !ok {
		return Overflow
	}
	return id
}
