package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/cgroup"
	"golang.org/x/sys/unix"

	"amber/internal/image"
)

// Write writes cgroup.img, when e has anything to restore.
func Write(dir image.Dir, e *cgroup.CgroupEntry) error {
	if e == nil {
		return nil
	}
	return image.WriteFile(dir.CgroupPath(), image.Cgroup, e)
}

// Read reads cgroup.img; nil if the dump wrote none.
func Read(dir image.Dir) (*cgroup.CgroupEntry, error) {
	p := dir.CgroupPath()
	if _, err := p.Stat(); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	es, err := image.ReadFile(p, image.Cgroup, func() *cgroup.CgroupEntry { return &cgroup.CgroupEntry{} })
	if err != nil {
		return nil, err
	}
	if len(es) == 0 {
		return nil, nil
	}
	return es[0], nil
}

// Restorer carries out a Plan: directories first (Prepare), then each
// process moved in as it is made (Move), then the properties (Finish).
// Undo removes what it made.
type Restorer struct {
	plan    *Plan
	mode    Mode
	self    uint32 // the dumper's set: its processes stay where they are made
	mounts  *mounts
	actions []Action // by Dirs index
	made    []string // directories made, parents first
}

// Prepare makes the directories of the plan that are missing, with
// their permissions and the cpuset properties tasks need to join them.
// self is the inventory's root_cg_set; yard is --cgroup-yard, "" to
// mount the hierarchies itself.
func Prepare(p *Plan, mode Mode, self uint32, yard string) (*Restorer, error) {
	r := &Restorer{plan: p, mode: mode, self: self, mounts: newMounts(yard)}
	for _, d := range p.Dirs {
		a, err := r.prepare(d)
		if err != nil {
			r.Undo()
			return nil, err
		}
		r.actions = append(r.actions, a)
	}
	return r, nil
}

// prepare makes directory d if missing, as the mode says.
func (r *Restorer) prepare(d Dir) (Action, error) {
	full, err := r.mounts.path(d.Hier, d.Path)
	if err != nil {
		return 0, err
	}
	_, err = os.Stat(full)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("cgroup %s of %s: %w", d.Path, displayName(d.Hier), err)
	}
	a, err := Decide(r.mode, err == nil, d)
	if err != nil || a != Make {
		return a, err
	}
	if err := r.mkdirs(d, full); err != nil {
		return 0, err
	}
	for _, p := range d.Props {
		if special(p.GetName()) {
			if err := writeProp(full, p); err != nil {
				return 0, fmt.Errorf("cgroup %s of %s: %w", d.Path, displayName(d.Hier), err)
			}
		}
	}
	return Make, nil
}

// mkdirs makes d's directory and any missing parent, each with its
// parent's cpuset (a v1 cpuset cgroup starts empty), remembering them
// for Undo.
func (r *Restorer) mkdirs(d Dir, full string) error {
	parent := filepath.Dir(full)
	if _, err := os.Stat(parent); errors.Is(err, fs.ErrNotExist) {
		if err := r.mkdirs(Dir{Hier: d.Hier, Path: filepath.Dir(d.Path)}, parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(full, 0o755); err != nil {
		return fmt.Errorf("cgroup %s of %s: %w", d.Path, displayName(d.Hier), err)
	}
	r.made = append(r.made, full)
	if err := inheritCpuset(parent, full); err != nil {
		return fmt.Errorf("cgroup %s of %s: %w", d.Path, displayName(d.Hier), err)
	}
	if pm := d.Perms; pm != nil {
		if err := os.Lchown(full, int(pm.GetUid()), int(pm.GetGid())); err != nil {
			return err
		}
		if err := os.Chmod(full, fs.FileMode(pm.GetMode()&0o777)); err != nil {
			return err
		}
	}
	return nil
}

// inheritCpuset copies the parent's cpuset.cpus and cpuset.mems into a
// new v1 cpuset cgroup, where they start empty and no task could join.
func inheritCpuset(parent, dir string) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		b, err := os.ReadFile(filepath.Join(parent, f))
		if errors.Is(err, fs.ErrNotExist) {
			return nil // not a v1 cpuset hierarchy
		}
		if err != nil {
			return err
		}
		if err := writeExisting(filepath.Join(dir, f), b); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	return nil
}

// Move puts process pid, whose core image names set, in its cgroups,
// unless set is the dumper's or parent's (the set of the process it
// is forked from, which it inherited).
func (r *Restorer) Move(pid int, set, parent uint32) error {
	if r == nil || set == 0 || set == r.self || set == parent {
		return nil
	}
	ms, ok := r.plan.Sets[set]
	if !ok {
		return fmt.Errorf("pid %d: cgroup set %d is not in cgroup.img", pid, set)
	}
	return r.moveTo(pid, ms, "cgroup")
}

// EnterNamespaceRoot moves process pid into the root of the tree's
// cgroup namespace in each hierarchy that has one: a cgroup namespace
// is rooted where its creator is when it unshares it.
func (r *Restorer) EnterNamespaceRoot(pid int) error {
	if r == nil {
		return nil
	}
	return r.moveTo(pid, r.plan.NsRoot, "the cgroup namespace's root")
}

// MoveBack moves process pid back into amber's own cgroups, in the
// hierarchies EnterNamespaceRoot moved it in: a process left in a
// cgroup would keep the restore from enabling controllers below it
// (cgroup v2) and from removing it after a failure.
func (r *Restorer) MoveBack(pid int) error {
	if r == nil || len(r.plan.NsRoot) == 0 {
		return nil
	}
	self, err := ReadSet(os.Getpid())
	if err != nil {
		return fmt.Errorf("amber's cgroups: %w", err)
	}
	var back []Member
	for _, m := range r.plan.NsRoot {
		if p, ok := self.path(m.Name); ok {
			back = append(back, Member{Name: m.Name, Path: p})
		}
	}
	return r.moveTo(pid, back, "amber's cgroup")
}

// moveTo writes pid into cgroup.procs of each member's cgroup; what
// names the cgroups in errors.
func (r *Restorer) moveTo(pid int, ms []Member, what string) error {
	for _, m := range ms {
		full, err := r.mounts.path(m.Name, m.Path)
		if err != nil {
			return err
		}
		if err := writeExisting(filepath.Join(full, "cgroup.procs"), []byte(strconv.Itoa(pid))); err != nil {
			return fmt.Errorf("pid %d: move into %s %s of %s: %w", pid, what, m.Path, displayName(m.Name), err)
		}
	}
	return nil
}

// MoveThread puts thread tid, just made in a process of set proc, in
// the cgroups of set, where they differ from the process's: it was made
// in its process's. A v2 thread goes through cgroup.threads (its cgroup
// is threaded: Prepare made it so), a v1 one through tasks.
func (r *Restorer) MoveThread(tid int, set, proc uint32) error {
	if r == nil || set == 0 || set == proc {
		return nil
	}
	ms, ok := r.plan.Sets[set]
	if !ok {
		return fmt.Errorf("thread %d: cgroup set %d is not in cgroup.img", tid, set)
	}
	for _, m := range ms {
		if own, _ := Set(r.plan.Sets[proc]).path(m.Name); own == m.Path {
			continue
		}
		full, err := r.mounts.path(m.Name, m.Path)
		if err != nil {
			return err
		}
		file := "tasks"
		if m.Name == "" {
			file = "cgroup.threads"
		}
		if err := writeExisting(filepath.Join(full, file), []byte(strconv.Itoa(tid))); err != nil {
			return fmt.Errorf("thread %d: move into cgroup %s of %s: %w", tid, m.Path, displayName(m.Name), err)
		}
	}
	return nil
}

// Finish sets the properties of the directories made, or of all in
// full and props modes, once every process is in place.
func (r *Restorer) Finish() error {
	if r == nil {
		return nil
	}
	for i, d := range r.plan.Dirs {
		if r.actions[i] == Use {
			continue
		}
		full, err := r.mounts.path(d.Hier, d.Path)
		if err != nil {
			return err
		}
		for _, p := range d.Props {
			if err := writeProp(full, p); err != nil {
				return fmt.Errorf("cgroup %s of %s: %w", d.Path, displayName(d.Hier), err)
			}
		}
	}
	return nil
}

// Close releases the restorer's mounts.
func (r *Restorer) Close() {
	if r != nil {
		r.mounts.close()
	}
}

// Undo removes the directories made, children first, after a failed
// restore: the killed tasks may take a moment to leave them.
func (r *Restorer) Undo() error {
	if r == nil {
		return nil
	}
	var errs []error
	for _, d := range slices.Backward(r.made) {
		errs = append(errs, rmdirRetry(d))
	}
	r.made = nil
	return errors.Join(errs...)
}

func rmdirRetry(dir string) error {
	var err error
	for i := 0; i < 100; i++ {
		if err = unix.Rmdir(dir); err != unix.EBUSY {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil && err != unix.ENOENT {
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	return nil
}

// writeProp writes property p into the cgroup at dir, unless it holds
// that value already. The values are those dumpProp saved.
func writeProp(dir string, p *cgroup.CgroupPropEntry) error {
	name, path := p.GetName(), filepath.Join(dir, p.GetName())
	if pm := p.GetPerms(); pm != nil {
		if err := os.Lchown(path, int(pm.GetUid()), int(pm.GetGid())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.Chmod(path, fs.FileMode(pm.GetMode()&0o777)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if permsOnly(name) || name == "freezer.state" {
		return nil
	}
	cur, err := dumpProp(path, name)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("property %s: not on this kernel", name)
	}
	if err != nil {
		return err
	}
	if cur.GetValue() == p.GetValue() {
		return nil
	}
	return writeValue(dir, name, p.GetValue())
}

// writeValue writes one property the way its file takes it.
func writeValue(dir, name, v string) error {
	switch name {
	case "devices.list":
		if err := writeFile(dir, "devices.deny", "a"); err != nil {
			return err
		}
		return writeLines(dir, "devices.allow", v)
	case "net_prio.ifpriomap":
		return writeLines(dir, name, v)
	case "cgroup.subtree_control":
		var on []string
		for _, c := range strings.Fields(v) {
			on = append(on, "+"+c)
		}
		return writeFile(dir, name, strings.Join(on, " "))
	case "cgroup.type":
		if v != "threaded" {
			return nil
		}
	}
	return writeFile(dir, name, v)
}

func writeLines(dir, name, v string) error {
	for _, l := range strings.Split(v, "\n") {
		if l == "" {
			continue
		}
		if err := writeFile(dir, name, l); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(dir, name, v string) error {
	if err := writeExisting(filepath.Join(dir, name), []byte(v)); err != nil {
		return fmt.Errorf("property %s = %q: %w", name, v, err)
	}
	return nil
}

// writeExisting writes data into the file at path, which must exist:
// a cgroup's files are the kernel's, none is created.
func writeExisting(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Close())
}
