package files

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"

	"amber/internal/fsroot"
	"amber/internal/idmap"
	"amber/internal/proc"
)

// Mappings of unlinked files. A dump records them as it records open
// ones: a regular-file entry remapped to the file's ghost, one ghost per
// inode whatever number of mappings, processes and descriptors hold it,
// its contents read through /proc/PID/map_files (the link opens the
// unlinked file itself).
//
// Restore cannot make such a ghost inside one task, as it does for a
// file only held open: a MAP_SHARED mapping in several processes (a
// POSIX semaphore in /dev/shm, shared by a parent and its children) must
// map one inode, so every task must find it by name. amber makes these
// ghosts itself before any task runs its plan (HostGhosts), every task
// opens them by that name, for its mappings and its descriptors alike,
// and amber removes them once every task is restored, or when the
// restore fails.

// mapKey is a mapped file as one file entry: the inode and the flags it
// is opened with.
type mapKey struct {
	file  fileKey
	flags uint32
}

// GhostMapping gives the files.img id of the unlinked file that VMA v of
// pid maps, to be opened with flags: every mapping of one inode with the
// same flags is one entry, and all its entries and descriptors share a
// ghost. A file that still has a name elsewhere is refused, as for a
// descriptor (addLinked).
func (d *Dumper) GhostMapping(pid int, v proc.VMA, flags uint32) (uint32, error) {
	at := fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, v.Start, v.End)
	st, err := os.Stat(at)
	if err != nil {
		return 0, fmt.Errorf("mapping of deleted file %s: %w", v.Path, err)
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("mapping of deleted %s %s is not supported", kindOf(st.Mode()), v.Path)
	}
	g := d.ghostState()
	k := mapKey{keyOf(st), flags}
	if id, ok := g.maps[k]; ok {
		return id, nil
	}
	link, err := os.Readlink(at)
	if err != nil {
		return 0, fmt.Errorf("mapping of deleted file %s: %w", v.Path, err)
	}
	id, err := d.addGhostAt(at, link, 0, st, flags)
	if err != nil {
		return 0, err
	}
	g.maps[k] = id
	return id, nil
}

// ghostState returns the dump's ghosts, made on first use.
func (d *Dumper) ghostState() *ghostState {
	if d.ghosts == nil {
		d.ghosts = &ghostState{ids: map[fileKey]uint32{}, maps: map[mapKey]uint32{}, links: map[fileKey]uint32{}}
	}
	return d.ghosts
}

// HostGhost is a ghost amber makes itself, at Path, for the restore.
type HostGhost struct {
	Path  string
	Ghost *Ghost
}

// PlanHostGhosts chooses the ghosts amber makes before any task runs:
// those of the regular files ids (file ids of the VMAs that the tree
// maps, and ReadOnlyGhosts, in any order and with repeats), each once,
// at ghostPath of the name of its lowest file id. It refuses a ghost
// whose path is taken (a stray of an earlier restore), or whose
// directory is gone, naming it.
func PlanHostGhosts(idx Index, x *Extra, ids []uint32, stat func(string) (os.FileInfo, error)) ([]HostGhost, error) {
	first := map[*Ghost]uint32{}
	for _, id := range ids {
		g := x.ghostOf(id)
		if g == nil {
			continue
		}
		if f, ok := first[g]; !ok || id < f {
			first[g] = id
		}
	}
	var out []HostGhost
	for g, id := range first {
		if g.Entry.GetMode()&unix.S_IFMT != unix.S_IFREG {
			return nil, fmt.Errorf("file id %d: a mapped ghost of mode %#o, not a regular file", id, g.Entry.GetMode())
		}
		orig, err := idx.RegPath(id)
		if err != nil {
			return nil, err
		}
		at := ghostPath(orig, g.ID)
		if _, err := stat(at); err == nil {
			return nil, fmt.Errorf("unlinked file %s (file id %d): %s exists, left by an earlier restore? Remove it", orig, id, at)
		}
		if st, err := stat(path.Dir(at)); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("unlinked file %s (file id %d): its directory %s is gone: not supported yet", orig, id, path.Dir(at))
		}
		out = append(out, HostGhost{Path: at, Ghost: g})
	}
	slices.SortFunc(out, func(a, b HostGhost) int { return int(a.Ghost.ID) - int(b.Ghost.ID) })
	return out, nil
}

// ReadOnlyGhosts lists the file ids of the unlinked regular files whose
// directory is on a read-only mount of root (the tree's, nil: amber's).
// No task can make such a ghost, nor remove it: amber does both, as for
// a mapped one (PlanHostGhosts), through a writable copy of the mount.
// A directory that is gone is left to the task's own planning, which
// names it.
func ReadOnlyGhosts(idx Index, x *Extra, root *fsroot.Root) ([]uint32, error) {
	if x == nil {
		return nil, nil
	}
	var out []uint32
	for _, id := range slices.Sorted(maps.Keys(x.Ghosts)) {
		g := x.Ghosts[id]
		if g.Entry.GetMode()&unix.S_IFMT != unix.S_IFREG || idx[id].GetReg() == nil {
			continue
		}
		orig, err := idx.RegPath(id)
		if err != nil {
			return nil, err
		}
		ro, err := root.ReadOnly(path.Dir(orig))
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("unlinked file %s (file id %d): %w", orig, id, err)
		}
		if ro {
			out = append(out, id)
		}
	}
	return out, nil
}

// HostPaths are the paths of the ghosts amber made, by ghost id, for the
// plans of the tasks (RestoreInput.HostGhosts).
func HostPaths(gs []HostGhost) map[uint32]string {
	out := make(map[uint32]string, len(gs))
	for _, g := range gs {
		out[g.Ghost.ID] = g.Path
	}
	return out
}

// openHostGhost opens file e of a ghost amber made at path at: no task
// creates or removes it.
func (p *fdPlanner) openHostGhost(e *fdinfo.FileEntry, at string) int {
	fd := p.b.Open(fmt.Sprintf("unlinked file id %d", e.GetId()), at, openFlags(e.GetReg()), 0)
	if pos := e.GetReg().GetPos(); pos != 0 {
		p.b.Call(fmt.Sprintf("seek unlinked %s to %d", e.GetReg().GetName(), pos), unix.SYS_LSEEK, uint64(fd), pos, unix.SEEK_SET)
	}
	return fd
}

// MappedPath is VerifiedPath for the files a task maps: a ghost's is
// where amber made it (ghosts, by ghost id; see PlanHostGhosts), not
// checked against the dump.
func (idx Index) MappedPath(c FileCheck, x *Extra, ghosts map[uint32]string) func(id uint32) (string, error) {
	verified := idx.VerifiedPath(c)
	return func(id uint32) (string, error) {
		g := x.ghostOf(id)
		if g == nil {
			return verified(id)
		}
		if at, ok := ghosts[g.ID]; ok {
			return at, nil
		}
		return "", fmt.Errorf("file id %d: an unlinked file that amber did not make again", id)
	}
}

// HostGhosts are the ghosts amber made for a restore, removed by Remove.
type HostGhosts struct {
	made []madeGhost
}

// madeGhost is a ghost amber made: its name in its directory, open at
// dir (fsroot.Root.WritableDir: it may be on a read-only mount).
type madeGhost struct {
	dir        int
	name, path string
}

// MakeHostGhosts creates each ghost at its path in root (the tree's;
// nil: amber's) with its contents, owner, mode and times, on a
// read-only mount too; users are the maps of the tree's user namespace
// (nil: none), whose view the images' owners are. On error it removes
// those it made.
func MakeHostGhosts(root *fsroot.Root, gs []HostGhost, users *idmap.Pair) (*HostGhosts, error) {
	h := &HostGhosts{}
	for _, g := range gs {
		if err := h.make(root, g, users); err != nil {
			return nil, errors.Join(fmt.Errorf("make the unlinked file %s again: %w", g.Path, err), h.Remove())
		}
	}
	return h, nil
}

// make creates one ghost and records it for Remove.
func (h *HostGhosts) make(root *fsroot.Root, g HostGhost, users *idmap.Pair) error {
	dir, err := root.WritableDir(path.Dir(g.Path))
	if err != nil {
		return err
	}
	name := path.Base(g.Path)
	fd, err := unix.Openat(dir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		unix.Close(dir)
		return &os.PathError{Op: "create", Path: g.Path, Err: err}
	}
	h.made = append(h.made, madeGhost{dir: dir, name: name, path: g.Path})
	return fillHostGhost(fd, g, users)
}

// fillHostGhost gives the ghost open at fd its contents, owner, mode
// and times, and closes fd.
func fillHostGhost(fd int, g HostGhost, users *idmap.Pair) error {
	mode := g.Ghost.Entry.GetMode() & 0o7777
	f := os.NewFile(uintptr(fd), g.Path)
	err := fillGhostData(f, g.Ghost, mode, users)
	if err == nil {
		// Last: writing changes the modification time.
		err = setGhostTimes(fd, g.Ghost)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// fillGhostData writes the ghost's size and data into f, then gives it
// its owner (the images', turned into amber's view by users) and mode
// (after the data: a chown clears set-id bits).
func fillGhostData(f *os.File, g *Ghost, mode uint32, users *idmap.Pair) error {
	if err := f.Truncate(int64(g.Size)); err != nil {
		return err
	}
	for _, c := range g.Chunks {
		if _, err := f.WriteAt(c.Data, int64(c.Off)); err != nil {
			return err
		}
	}
	uid, err := users.OuterUid(g.Entry.GetUid())
	if err != nil {
		return fmt.Errorf("owner: %w", err)
	}
	gid, err := users.OuterGid(g.Entry.GetGid())
	if err != nil {
		return fmt.Errorf("group: %w", err)
	}
	if err := f.Chown(int(uid), int(gid)); err != nil {
		return err
	}
	return unix.Fchmod(int(f.Fd()), mode)
}

// setGhostTimes sets the access and modification times of the ghost
// open at fd, if the image has them.
func setGhostTimes(fd int, g *Ghost) error {
	a, m := g.Entry.GetAtim(), g.Entry.GetMtim()
	if a == nil || m == nil {
		return nil
	}
	tv := []unix.Timeval{
		{Sec: int64(a.GetTvSec()), Usec: int64(a.GetTvUsec())},
		{Sec: int64(m.GetTvSec()), Usec: int64(m.GetTvUsec())},
	}
	return unix.Futimes(fd, tv)
}

// Remove unlinks every ghost made, once: the tasks keep them open and
// mapped. It may be called again (a restore's error path after its
// success path), and on nil.
func (h *HostGhosts) Remove() error {
	if h == nil {
		return nil
	}
	var errs []error
	for _, m := range h.made {
		if err := unix.Unlinkat(m.dir, m.name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, &os.PathError{Op: "remove", Path: m.path, Err: err})
		}
		unix.Close(m.dir)
	}
	h.made = nil
	return errors.Join(errs...)
}
