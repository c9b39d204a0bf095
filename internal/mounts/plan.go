package mounts

// Planning a restore: what to mount, from what, in which order. Pure Go
// on the entries of mountpoints-ID.img.

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
)

// How a mount is made again.
type How int

const (
	// Root is the namespace's root mount: a bind of --root.
	Root How = iota
	// New is a filesystem mounted afresh (proc, tmpfs, ...).
	New
	// Bind binds part of another mount of the namespace.
	Bind
	// External binds a path of the host given by --external mnt[KEY]:PATH.
	External
)

func (h How) String() string {
	return [...]string{"root", "new", "bind", "external"}[h]
}

// Step is one mount of a restore, in order.
type Step struct {
	Entry *mnt.MntEntry
	How   How
	// Target is where it goes, relative to the new root ("/" for Root).
	Target string
	// Source is what is bound: for Bind a path relative to the new root
	// (inside a mount made by an earlier step), for External a path of
	// the host; for New the source named in mountinfo.
	Source string
	// FSType and Data are the filesystem and options of a New mount.
	FSType, Data string
	// SbFlags are the MS_ flags a New mount is made with.
	SbFlags uint32
	// Flags are the mount's own MS_ flags (ro, nosuid, ..., atime),
	// without propagation, set by a bind remount once it is made.
	Flags uint32
	// Tmpfs: the contents come from tmpfs-dev-DEV.tar.gz.img, DEV the
	// entry's root_dev.
	Tmpfs bool
	// PtySlave: a Bind of the slave of pty PtyIndex of a devpts (runc's
	// /dev/console), whose node exists only while the pty does: the
	// restore makes the pty first, at the ptmx beside Source.
	PtySlave bool
	PtyIndex uint32

	sources  []*mnt.MntEntry // the mounts a Bind may be bound from, best first
	bindFrom uint32          // the mount id a Bind is bound from
	rel      string          // the path bound, below the root of bindFrom
}

// freshTypes are the filesystems a restore mounts afresh: their contents
// are the kernel's (or, for tmpfs, saved in the images).
var freshTypes = map[string]bool{
	"proc": true, "sysfs": true, "tmpfs": true, "devpts": true, "mqueue": true,
	"cgroup": true, "cgroup2": true, "binfmt_misc": true, "securityfs": true,
	"debugfs": true, "tracefs": true, "pstore": true, "fusectl": true, "devtmpfs": true,
}

// Plan orders the mounts of entries for a restore: each after its parent
// and after the mount it is bound from. ext maps external keys to host
// paths (--external mnt[KEY]:PATH). It fails naming the mount it cannot
// make.
func Plan(entries []*mnt.MntEntry, ext map[string]string) ([]Step, error) {
	root, err := rootOf(entries)
	if err != nil {
		return nil, err
	}
	steps := map[uint32]*Step{}
	for _, e := range entries {
		s, err := stepOf(e, root, entries, ext)
		if err != nil {
			return nil, err
		}
		steps[e.GetMntId()] = s
	}
	return order(entries, root, steps)
}

// rootOf finds the root mount: the one whose parent is not in the
// namespace, mounted at "/".
func rootOf(entries []*mnt.MntEntry) (*mnt.MntEntry, error) {
	ids := map[uint32]bool{}
	for _, e := range entries {
		if ids[e.GetMntId()] {
			return nil, fmt.Errorf("mount id %d appears twice", e.GetMntId())
		}
		ids[e.GetMntId()] = true
	}
	var root *mnt.MntEntry
	for _, e := range entries {
		if ids[e.GetParentMntId()] && e.GetParentMntId() != e.GetMntId() {
			continue
		}
		if root != nil {
			return nil, fmt.Errorf("mounts %d and %d both have no parent in the namespace", root.GetMntId(), e.GetMntId())
		}
		root = e
	}
	if root == nil {
		return nil, fmt.Errorf("no root mount")
	}
	if root.GetMountpoint() != "/" {
		return nil, fmt.Errorf("mount %d: the root mount is at %q, not /", root.GetMntId(), root.GetMountpoint())
	}
	return root, nil
}

// stepOf decides how e is made again.
func stepOf(e, root *mnt.MntEntry, entries []*mnt.MntEntry, ext map[string]string) (*Step, error) {
	mp := path.Clean(e.GetMountpoint())
	if !path.IsAbs(mp) {
		return nil, fmt.Errorf("mount %d: mountpoint %q is not absolute", e.GetMntId(), e.GetMountpoint())
	}
	s := &Step{Entry: e, Target: mp, Flags: e.GetFlags() &^ propagation}
	switch {
	case e == root:
		s.How = Root
	case e.GetExtKey() != "":
		src, ok := ext[e.GetExtKey()]
		if !ok {
			return nil, fmt.Errorf("mount %d at %s is external with key %q: give its source with --external mnt[%s]:PATH", e.GetMntId(), mp, e.GetExtKey(), e.GetExtKey())
		}
		s.How, s.Source = External, src
	case fresh(e, entries):
		s.How, s.Source, s.FSType, s.Data, s.SbFlags = New, e.GetSource(), fsName(e), e.GetOptions(), e.GetSbFlags()
		s.Tmpfs = s.FSType == "tmpfs"
	default:
		s.sources = bindSources(e, root, entries)
		if len(s.sources) == 0 {
			return nil, fmt.Errorf("mount %d at %s (%s, root %s) is a bind of a filesystem no other mount of the namespace holds: dump it with --external mnt[%s]:KEY",
				e.GetMntId(), mp, fsName(e), e.GetRoot(), mp)
		}
		s.How = Bind
		s.from(s.sources[0])
		s.PtyIndex, s.PtySlave = ptySlaveOf(e)
	}
	return s, nil
}

// fresh tells whether e is mounted afresh: the whole of a filesystem of
// a kind amber mounts, and the first mount of it in the namespace (the
// others are binds of it).
func fresh(e *mnt.MntEntry, entries []*mnt.MntEntry) bool {
	if e.GetRoot() != "/" || !freshTypes[fsName(e)] {
		return false
	}
	for _, o := range entries {
		if o.GetRootDev() == e.GetRootDev() && o.GetRoot() == "/" && o.GetExtKey() == "" && o.GetMntId() < e.GetMntId() {
			return false
		}
	}
	return true
}

// bindSources are the mounts e may be bound from: the others of the
// same filesystem whose root holds e's root. First those made earlier
// in the dumped namespace (a smaller id, or the root, a fresh or an
// external mount: never one bound from e itself), then the rest, each
// kind the closest first: a restore binds from the first one made.
func bindSources(e, root *mnt.MntEntry, entries []*mnt.MntEntry) []*mnt.MntEntry {
	var srcs []*mnt.MntEntry
	for _, o := range entries {
		if o != e && o.GetRootDev() == e.GetRootDev() && within(e.GetRoot(), o.GetRoot()) {
			srcs = append(srcs, o)
		}
	}
	later := func(o *mnt.MntEntry) bool {
		return o != root && o.GetMntId() > e.GetMntId() && !fresh(o, entries) && o.GetExtKey() == ""
	}
	slices.SortStableFunc(srcs, func(a, b *mnt.MntEntry) int {
		if la, lb := later(a), later(b); la != lb {
			if la {
				return 1
			}
			return -1
		}
		return len(b.GetRoot()) - len(a.GetRoot())
	})
	return srcs
}

// from makes the Bind s bound from src.
func (s *Step) from(src *mnt.MntEntry) {
	e := s.Entry
	s.Source = path.Join(src.GetMountpoint(), strings.TrimPrefix(e.GetRoot(), src.GetRoot()))
	s.bindFrom = src.GetMntId()
	s.rel = strings.TrimPrefix(strings.TrimPrefix(e.GetRoot(), src.GetRoot()), "/")
	if s.rel == "" {
		s.rel = "."
	}
}

// source finds the first of the Bind s's sources (only the first one,
// if best) that done holds, and binds s from it.
func (s *Step) source(best bool, done func(id uint32) bool) bool {
	for i, src := range s.sources {
		if best && i > 0 {
			break
		}
		if done(src.GetMntId()) {
			s.from(src)
			return true
		}
	}
	return false
}

// ptySlaveOf tells whether e binds a pty slave of a devpts (its root is
// "/N"), and which.
func ptySlaveOf(e *mnt.MntEntry) (uint32, bool) {
	if fsName(e) != "devpts" {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(e.GetRoot(), "/"), 10, 32)
	if err != nil || !strings.HasPrefix(e.GetRoot(), "/") {
		return 0, false
	}
	return uint32(n), true
}

// under tells whether sibling o's mountpoint is below s's, or is s's
// and o was mounted first: s then hides o.
func under(o, s *Step) bool {
	if o.Target == s.Target {
		return o.Entry.GetMntId() < s.Entry.GetMntId()
	}
	return within(o.Target, s.Target)
}

// within tells whether p is dir or below it.
func within(p, dir string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

// order lists the steps so that every mount comes after its parent and
// after the mount it is bound from, children in the order of the
// images, but a mount whose mountpoint holds a sibling's (one of the
// same parent), which it hides, after that sibling: the sibling's
// mountpoint is reached through the parent's files, not through the
// mount over them. A bind waits for its best source, unless nothing
// else can be placed: then it is bound from another one made already
// (a bind from a mount hidden under a later one, which the source
// could have to wait for).
func order(entries []*mnt.MntEntry, root *mnt.MntEntry, steps map[uint32]*Step) ([]Step, error) {
	done := map[uint32]bool{}
	out := []Step{*steps[root.GetMntId()]}
	done[root.GetMntId()] = true
	hides := func(s *Step) bool {
		for _, o := range entries {
			if !done[o.GetMntId()] && o != s.Entry && o.GetParentMntId() == s.Entry.GetParentMntId() && under(steps[o.GetMntId()], s) {
				return true
			}
		}
		return false
	}
	best := true
	for len(out) < len(entries) {
		progress := false
		for _, e := range entries {
			s := steps[e.GetMntId()]
			if done[e.GetMntId()] || !done[e.GetParentMntId()] || hides(s) {
				continue
			}
			if s.How == Bind && !s.source(best, func(id uint32) bool { return done[id] }) {
				continue
			}
			out = append(out, *s)
			done[e.GetMntId()] = true
			progress = true
			if !best {
				break
			}
		}
		switch {
		case progress:
			best = true
		case best:
			best = false
		default:
			return nil, fmt.Errorf("mounts %s: their parents or sources form a loop", pending(entries, done))
		}
	}
	return out, nil
}

// pending names the mounts not placed.
func pending(entries []*mnt.MntEntry, done map[uint32]bool) string {
	var ids []string
	for _, e := range entries {
		if !done[e.GetMntId()] {
			ids = append(ids, fmt.Sprintf("%d", e.GetMntId()))
		}
	}
	sort.Strings(ids)
	return strings.Join(ids, ", ")
}
