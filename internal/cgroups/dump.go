package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/cgroup"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Dumper collects the cgroups of the processes of one dump.
type Dumper struct {
	mounts *mounts
	sets   []Set // by id-1: amber's own is the first, id 1
	// dirs are the directories dumped, by hierarchy: the heads (the
	// processes' cgroups) and their subtrees.
	dirs map[string]*dirTree
	// nsRoot is the root of the tree's cgroup namespace in each
	// hierarchy, if the tree has one of its own (SetNamespace).
	nsRoot Set
}

// dirTree is the dumped directories of one hierarchy.
type dirTree struct {
	heads  []*cgroup.CgroupDirEntry
	byPath map[string]*cgroup.CgroupDirEntry
}

// SelfSet is the id of amber's own set, the inventory's root_cg_set.
const SelfSet = 1

// NewDumper reads amber's own cgroups, the set a process shares with
// amber needs no restoring. yard is --cgroup-yard, "" to mount the
// hierarchies itself.
func NewDumper(yard string) (*Dumper, error) {
	self, err := ReadSet(os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("amber's cgroups: %w", err)
	}
	return &Dumper{mounts: newMounts(yard), sets: []Set{self}, dirs: map[string]*dirTree{}}, nil
}

// Close releases the dumper's mounts. A nil Dumper dumps nothing.
func (d *Dumper) Close() {
	if d != nil {
		d.mounts.close()
	}
}

// Add records the cgroups of process pid and returns its set's id, for
// its core image's cg_set. A new set's cgroups are dumped with their
// subtrees.
func (d *Dumper) Add(pid int) (uint32, error) {
	s, err := ReadSet(pid)
	if err != nil {
		return 0, fmt.Errorf("cgroups of pid %d: %w", pid, err)
	}
	return d.add(s, fmt.Sprintf("pid %d", pid))
}

// AddThread records the cgroups of thread tid of process pid and returns
// its set's id, for its thread core's cg_set: a thread may be in other
// cgroups than its process (v1 tasks, v2 threaded cgroups).
func (d *Dumper) AddThread(pid, tid int) (uint32, error) {
	s, err := ReadThreadSet(pid, tid)
	if err != nil {
		return 0, fmt.Errorf("cgroups of thread %d of pid %d: %w", tid, pid, err)
	}
	return d.add(s, fmt.Sprintf("thread %d of pid %d", tid, pid))
}

// add records set s, of who, and returns its id.
func (d *Dumper) add(s Set, who string) (uint32, error) {
	for i, o := range d.sets {
		if o.equal(s) {
			return uint32(i + 1), nil
		}
	}
	if len(s) != len(d.sets[0]) {
		return 0, fmt.Errorf("cgroups of %s: %d hierarchies where amber has %d: not supported", who, len(s), len(d.sets[0]))
	}
	for _, m := range s {
		if own, _ := d.sets[0].path(m.Name); own == m.Path {
			continue
		}
		if err := d.collect(m); err != nil {
			return 0, fmt.Errorf("cgroups of %s: %w", who, err)
		}
	}
	d.sets = append(d.sets, s)
	return uint32(len(d.sets)), nil
}

// SetNamespace records the root of the tree's own cgroup namespace:
// full is the root task's cgroups as amber sees them, rel as they are
// seen inside the namespace, relative to its root. In each hierarchy
// the namespace's root is what full has before rel.
func (d *Dumper) SetNamespace(full, rel Set) error {
	root, err := namespaceRoot(full, rel)
	if err != nil {
		return err
	}
	d.nsRoot = root
	return nil
}

// namespaceRoot is the root of a cgroup namespace in each hierarchy,
// from a task's cgroups seen from outside (full) and inside (rel).
func namespaceRoot(full, rel Set) (Set, error) {
	var root Set
	for _, m := range full {
		r, ok := rel.path(m.Name)
		if !ok {
			return nil, fmt.Errorf("cgroup namespace: hierarchy %s is not seen inside it", displayName(m.Name))
		}
		// rel starts with a slash, so the cut falls between two names.
		prefix, ok := strings.CutSuffix(m.Path, strings.TrimSuffix(r, "/"))
		if !ok || !strings.HasPrefix(r, "/") {
			return nil, fmt.Errorf("cgroup namespace: cgroup %s of %s is %s inside it, not a path below its root", m.Path, displayName(m.Name), r)
		}
		if prefix == "" {
			prefix = "/"
		}
		root = append(root, Member{Name: m.Name, Path: prefix})
	}
	return root, nil
}

// collect dumps cgroup m and every cgroup below it, parents first.
func (d *Dumper) collect(m Member) error {
	t := d.dirs[m.Name]
	if t == nil {
		t = &dirTree{byPath: map[string]*cgroup.CgroupDirEntry{}}
		d.dirs[m.Name] = t
	}
	top, err := d.mounts.path(m.Name, m.Path)
	if err != nil {
		return err
	}
	return filepath.WalkDir(top, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("cgroup %s of %s: %w", m.Path, displayName(m.Name), err)
		}
		if !e.IsDir() {
			return nil
		}
		rel := filepath.Join(m.Path, strings.TrimPrefix(p, top))
		if t.byPath[rel] != nil {
			return fs.SkipDir // dumped with another set
		}
		dir, err := dumpDir(p, rel, m.Name)
		if err != nil {
			return err
		}
		t.add(rel, dir)
		return nil
	})
}

// add files dir, the cgroup at rel, under its parent if dumped, else
// as a head named by its whole path.
func (t *dirTree) add(rel string, dir *cgroup.CgroupDirEntry) {
	t.byPath[rel] = dir
	if parent := t.byPath[filepath.Dir(rel)]; parent != nil && rel != "/" {
		dir.DirName = proto.String(filepath.Base(rel))
		parent.Children = append(parent.Children, dir)
		return
	}
	dir.DirName = proto.String(strings.TrimPrefix(rel, "/"))
	t.heads = append(t.heads, dir)
}

// dumpDir reads the permissions and properties of the cgroup directory
// at path (rel in hierarchy name).
func dumpDir(path, rel, name string) (*cgroup.CgroupDirEntry, error) {
	perms, err := permsOf(path)
	if err != nil {
		return nil, fmt.Errorf("cgroup %s of %s: %w", rel, displayName(name), err)
	}
	dir := &cgroup.CgroupDirEntry{DirPerms: perms}
	for _, prop := range propsOf(name) {
		e, err := dumpProp(filepath.Join(path, prop), prop)
		if errors.Is(err, fs.ErrNotExist) {
			continue // not on this kernel
		}
		if err != nil {
			return nil, fmt.Errorf("cgroup %s of %s: %w", rel, displayName(name), err)
		}
		dir.Properties = append(dir.Properties, e)
	}
	return dir, nil
}

// dumpProp reads one property as CRIU saves it: the value trimmed,
// the largest int64 (no limit) as -1, memory.oom_control as its
// oom_kill_disable.
func dumpProp(path, prop string) (*cgroup.CgroupPropEntry, error) {
	if permsOnly(prop) {
		perms, err := permsOf(path)
		if err != nil {
			return nil, err
		}
		return &cgroup.CgroupPropEntry{Name: proto.String(prop), Value: proto.String(""), Perms: perms}, nil
	}
	b, st, err := readProp(path)
	if err != nil {
		return nil, err
	}
	e := &cgroup.CgroupPropEntry{Name: proto.String(prop), Perms: perms(&st)}
	v := strings.TrimSpace(string(b))
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n == math.MaxInt64 {
		v = "-1"
	}
	if prop == "memory.oom_control" {
		var disable int
		if _, err := fmt.Sscanf(v, "oom_kill_disable %d", &disable); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", path, v, err)
		}
		v = strconv.Itoa(disable)
	}
	e.Value = proto.String(v)
	return e, nil
}

// permsOf reads who owns path and its mode.
func permsOf(path string) (*cgroup.CgroupPerms, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return perms(&st), nil
}

func perms(st *unix.Stat_t) *cgroup.CgroupPerms {
	return &cgroup.CgroupPerms{Mode: proto.Uint32(st.Mode), Uid: proto.Uint32(st.Uid), Gid: proto.Uint32(st.Gid)}
}

// readProp reads the property file at path and its status with plain
// system calls: a dump reads some 150 of them, and os.ReadFile's
// descriptor registers a kernfs file with Go's poller and unregisters
// it again, three more calls for each.
func readProp(path string) ([]byte, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, st, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, st, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	b := make([]byte, 0, 512)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, st, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return b, st, nil
		}
		b = b[:len(b)+n]
	}
}

// Entry is cgroup.img's entry: every set but amber's, and the dumped
// directories by hierarchy. It is nil when every process is in amber's
// cgroups: there is nothing to restore.
func (d *Dumper) Entry() *cgroup.CgroupEntry {
	if d == nil || len(d.sets) == 1 {
		return nil
	}
	e := &cgroup.CgroupEntry{}
	for i, s := range d.sets[1:] {
		se := &cgroup.CgSetEntry{Id: proto.Uint32(uint32(i + 2))}
		for _, m := range s {
			me := &cgroup.CgMemberEntry{Name: proto.String(m.Name), Path: proto.String(m.Path)}
			if root, ok := d.nsRoot.path(m.Name); ok && root != "/" {
				if _, below := under(m.Path, root); below {
					me.CgnsPrefix = proto.Uint32(uint32(len(root)))
				}
			}
			se.Ctls = append(se.Ctls, me)
		}
		e.Sets = append(e.Sets, se)
	}
	for _, m := range d.sets[0] {
		c := &cgroup.CgControllerEntry{Cnames: cnames(m.Name), IsThreaded: proto.Bool(m.Name != "")}
		if t := d.dirs[m.Name]; t != nil {
			c.Dirs = t.heads
		}
		e.Controllers = append(e.Controllers, c)
	}
	return e
}
