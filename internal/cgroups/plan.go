package cgroups

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/cgroup"
)

// Plan is what restoring cgroup.img takes: the directories to have,
// parents first, and each set's cgroups. It is pure data, made from
// the images and the options only.
type Plan struct {
	Dirs []Dir
	Sets map[uint32][]Member
	// NsRoot is the root of the tree's cgroup namespace in each
	// hierarchy whose paths have one (cgns_prefix).
	NsRoot Set
}

// Dir is one cgroup directory of the images.
type Dir struct {
	Hier  string // the hierarchy, as Member.Name
	Path  string // from the hierarchy's root, "/a/b"
	Perms *cgroup.CgroupPerms
	Props []*cgroup.CgroupPropEntry
}

// NewPlan plans the restore of e with roots (--cgroup-root) applied:
// each dumped top directory of a hierarchy with a new root is that
// root, and the set paths under it move with it, as CRIU's
// rewrite_cgroup_roots does.
func NewPlan(e *cgroup.CgroupEntry, roots []Root) (*Plan, error) {
	p := &Plan{Sets: map[uint32][]Member{}}
	for _, s := range e.GetSets() {
		var ms []Member
		for _, m := range s.GetCtls() {
			c := controllerOf(e, m.GetName())
			if c == nil {
				return nil, fmt.Errorf("cgroup set %d: hierarchy %q has no controller entry", s.GetId(), m.GetName())
			}
			ms = append(ms, Member{Name: hierName(c), Path: m.GetPath()})
			if err := p.addNsRoot(hierName(c), m); err != nil {
				return nil, fmt.Errorf("cgroup set %d: %w", s.GetId(), err)
			}
		}
		p.Sets[s.GetId()] = ms
	}
	for _, c := range e.GetControllers() {
		name := hierName(c)
		root, err := rootOf(roots, c.GetCnames())
		if err != nil {
			return nil, err
		}
		for _, head := range c.GetDirs() {
			top := "/" + head.GetDirName()
			if root != "" {
				p.rebase(name, top, root)
				top = root
			}
			p.addDirs(name, top, head)
		}
	}
	return p, nil
}

// addNsRoot records the root of the cgroup namespace that member m's
// cgns_prefix gives, in hierarchy name: the first cgns_prefix bytes of
// its path. The tree has one cgroup namespace: two roots in one
// hierarchy are an error.
func (p *Plan) addNsRoot(name string, m *cgroup.CgMemberEntry) error {
	if m.CgnsPrefix == nil || m.GetCgnsPrefix() == 0 {
		return nil
	}
	full, n := m.GetPath(), int(m.GetCgnsPrefix())
	if n > len(full) || (n < len(full) && full[n] != '/') || !strings.HasPrefix(full, "/") {
		return fmt.Errorf("cgroup %s of %s: cgns_prefix %d does not end a directory of it", full, displayName(name), n)
	}
	root := full[:n]
	if old, ok := p.NsRoot.path(name); ok {
		if old != root {
			return fmt.Errorf("cgroup namespace roots %s and %s in %s: a tree has one cgroup namespace", old, root, displayName(name))
		}
		return nil
	}
	p.NsRoot = append(p.NsRoot, Member{Name: name, Path: root})
	return nil
}

// hierName is the hierarchy of controller entry c, named as in
// /proc/PID/cgroup.
func hierName(c *cgroup.CgControllerEntry) string { return strings.Join(c.GetCnames(), ",") }

// controllerOf finds the controller entry of hierarchy name.
func controllerOf(e *cgroup.CgroupEntry, name string) *cgroup.CgControllerEntry {
	for _, c := range e.GetControllers() {
		if sameHierarchy(c.GetCnames(), name) {
			return c
		}
	}
	return nil
}

// rootOf is the new root of a hierarchy of controllers names: the one
// given for one of its controllers, else the one given for all, else
// "". Two different roots for one hierarchy are an error.
func rootOf(roots []Root, names []string) (string, error) {
	found, global := "", ""
	for _, r := range roots {
		if r.Controller == "" {
			global = path.Clean(r.Path)
			continue
		}
		if !slices.Contains(names, r.Controller) {
			continue
		}
		if found != "" && found != path.Clean(r.Path) {
			return "", fmt.Errorf("--cgroup-root: %s and %s are both given for the hierarchy %s", found, r.Path, strings.Join(names, ","))
		}
		found = path.Clean(r.Path)
	}
	if found == "" {
		found = global
	}
	return found, nil
}

// rebase moves the set paths of hierarchy name under top to root, and
// the cgroup namespace's root with them.
func (p *Plan) rebase(name, top, root string) {
	for _, ms := range p.Sets {
		rebaseIn(ms, name, top, root)
	}
	rebaseIn(p.NsRoot, name, top, root)
}

// rebaseIn moves the paths of ms in hierarchy name under top to root.
func rebaseIn(ms []Member, name, top, root string) {
	for i, m := range ms {
		if m.Name != name {
			continue
		}
		if rest, ok := under(m.Path, top); ok {
			ms[i].Path = path.Join(root, rest)
		}
	}
}

// under tells whether p is dir or below it, and what follows dir.
func under(p, dir string) (string, bool) {
	if dir == "/" {
		return p, true
	}
	if p == dir {
		return "/", true
	}
	rest, ok := strings.CutPrefix(p, dir+"/")
	return "/" + rest, ok
}

// addDirs adds d, at p, and its children after it.
func (p *Plan) addDirs(name, at string, d *cgroup.CgroupDirEntry) {
	p.Dirs = append(p.Dirs, Dir{Hier: name, Path: at, Perms: d.GetDirPerms(), Props: d.GetProperties()})
	for _, c := range d.GetChildren() {
		p.addDirs(name, path.Join(at, c.GetDirName()), c)
	}
}

// Action is what a restore does about one directory of the plan.
type Action int

// The actions on a directory.
const (
	Use    Action = iota // use it as it is
	Make                 // create it, then set its properties
	Update               // set the properties of the existing one
)

// Decide says what mode does about a directory that exists or not.
func Decide(mode Mode, exists bool, d Dir) (Action, error) {
	switch {
	case !exists && (mode == None || mode == Props):
		return 0, fmt.Errorf("cgroup %s of %s does not exist (--manage-cgroups=%s creates none)", d.Path, displayName(d.Hier), mode)
	case !exists:
		return Make, nil
	case mode == Strict:
		return 0, fmt.Errorf("cgroup %s of %s exists already (--manage-cgroups=strict)", d.Path, displayName(d.Hier))
	case mode == Full || mode == Props:
		return Update, nil
	}
	return Use, nil
}
