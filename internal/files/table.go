package files

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fown"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/regfile"
	"google.golang.org/protobuf/proto"

	"golang.org/x/sys/unix"

	"amber/internal/fsroot"
	"amber/internal/image"
	"amber/internal/proc"
)

// Table collects the files.img entries of a dump and gives each its id.
type Table struct {
	entries []*fdinfo.FileEntry
	regs    map[regKey]uint32
	// times are the modification times and devices of the regular files,
	// by id, as the dump saw them (for amber-mtimes.txt).
	times map[uint32]regTime
	// root is where the tree's paths are looked up (nil: amber's
	// root): the tree's root, for a tree in a mount namespace of its
	// own (SetRoot).
	root *fsroot.Root
	// mounts are the ids of the mounts of the tree's mount namespace
	// (SetRoot); nil: amber's.
	mounts map[int]bool
	// mntns are the mount namespaces of tasks, by PID (mntnsOf).
	mntns map[int]uint64
	// nsRoots are where the paths of each mount namespace of the tree
	// are looked up, by its inode (SetNamespaceRoots): the root of a
	// task in it.
	nsRoots map[uint64]*fsroot.Root
}

// SetNamespaceRoots makes the table look the paths of the tasks of
// each mount namespace of the tree up under the root of pids, one task
// of each: the tree's root for its own. A task's paths are relative to
// its namespace's root, not to a root it chrooted to.
func (t *Table) SetNamespaceRoots(pids []int) error {
	t.nsRoots = map[uint64]*fsroot.Root{}
	for _, pid := range pids {
		ino, err := t.mntnsOf(pid)
		if err != nil {
			return err
		}
		if _, ok := t.nsRoots[ino]; ok {
			continue
		}
		if t.nsRoots[ino], err = fsroot.Of(pid); err != nil {
			return err
		}
	}
	return nil
}

// SetRoot makes the table look paths up in root, the tree's root: the
// tree's paths are relative to it. The table owns root from then on
// (Close). mounts are the ids of the mounts of the tree's mount
// namespace: a file named by a path on another mount (one of the
// host's, inherited) cannot be opened again by that path, and is
// refused.
func (t *Table) SetRoot(root *fsroot.Root, mounts map[int]bool) { t.root, t.mounts = root, mounts }

// Close closes the tree's roots (SetRoot, SetNamespaceRoots), once the
// dump is over.
func (t *Table) Close() error {
	errs := []error{t.root.Close()}
	for _, r := range t.nsRoots {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}

// onTreeMount refuses a file named by path whose mount (fdinfo's
// mnt_id) is not one of the tree's mount namespace, as CRIU does.
func (t *Table) onTreeMount(path string, info proc.FdInfo) error {
	if t.mounts == nil || t.mounts[info.MntID] {
		return nil
	}
	return fmt.Errorf("%s is on mount %d, which is not in the tree's mount namespace (a file of the host's): not supported", path, info.MntID)
}

// setMount records the mount file id is open on (fdinfo's mnt_id) when
// the tree has mount namespaces of its own: a restore opens it in the
// namespace of that mount, which may not be its task's.
func (t *Table) setMount(id uint32, mntID int) {
	if t.mounts != nil {
		t.entries[id-1].Reg.MntId = proto.Int32(int32(mntID))
	}
}

// stat looks a path of the tree up.
func (t *Table) stat(path string) (os.FileInfo, error) { return t.root.Stat(path) }

// regTime is when a regular file was last modified, and its device.
type regTime struct {
	mtime time.Time
	dev   uint64
}

type regKey struct {
	path  string
	flags uint32
	mntns uint64 // the inode of the mount namespace it is in, 0: amber's
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{regs: map[regKey]uint32{}, times: map[uint32]regTime{}, mntns: map[int]uint64{}}
}

func (t *Table) nextID() uint32 { return uint32(len(t.entries)) + 1 }

// Entries returns the entries in id order.
func (t *Table) Entries() []*fdinfo.FileEntry { return t.entries }

func newFown() *fown.FownEntry {
	z := proto.Uint32(0)
	return &fown.FownEntry{Uid: z, Euid: z, Signum: z, PidType: z, Pid: z}
}

// AddPath registers a file that task pid uses by path only (a mapped
// file, the exe, cwd or root): one entry per path, open mode and mount
// namespace. In a tree with mount namespaces of its own the path is
// looked up in pid's namespace (SetNamespaceRoots).
func (t *Table) AddPath(pid int, path string, flags uint32) (uint32, error) {
	k := regKey{path: path, flags: flags}
	root := t.root
	if t.root != nil {
		var err error
		if k.mntns, err = t.mntnsOf(pid); err != nil {
			return 0, err
		}
		if r, ok := t.nsRoots[k.mntns]; ok {
			root = r
		}
	}
	if id, ok := t.regs[k]; ok {
		return id, nil
	}
	st, err := root.Stat(path)
	if err != nil {
		return 0, err
	}
	id := t.addReg(path, flags, 0, st)
	t.regs[k] = id
	return id, nil
}

// mntnsOf is the inode of pid's mount namespace, read once per task.
func (t *Table) mntnsOf(pid int) (uint64, error) {
	if ino, ok := t.mntns[pid]; ok {
		return ino, nil
	}
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/mnt", pid), &st); err != nil {
		return 0, fmt.Errorf("mount namespace of pid %d: %w", pid, err)
	}
	t.mntns[pid] = st.Ino
	return st.Ino, nil
}

// addReg adds a regular-file entry (also used for directories and
// devices) and returns its id.
func (t *Table) addReg(path string, flags uint32, pos uint64, st os.FileInfo) uint32 {
	id := t.nextID()
	reg := &regfile.RegFileEntry{
		Id:    proto.Uint32(id),
		Flags: proto.Uint32(flags),
		Pos:   proto.Uint64(pos),
		Fown:  newFown(),
		Name:  proto.String(path),
		Mode:  proto.Uint32(unixMode(st)),
	}
	if st.Mode().IsRegular() {
		reg.Size = proto.Uint64(uint64(st.Size()))
		t.times[id] = regTime{st.ModTime(), keyOf(st).dev}
	}
	t.entries = append(t.entries, &fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(id), Reg: reg})
	return id
}

// Write writes files.img.
func (t *Table) Write(dir image.Dir) error {
	w, err := image.Create(dir.FilesPath(), image.Files)
	if err != nil {
		return err
	}
	for _, e := range t.entries {
		if err := w.Write(e); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

// Index is files.img read back, by id.
type Index map[uint32]*fdinfo.FileEntry

// ReadIndex reads files.img.
func ReadIndex(dir image.Dir) (Index, error) {
	all, err := image.ReadFile(dir.FilesPath(), image.Files, func() *fdinfo.FileEntry { return new(fdinfo.FileEntry) })
	if err != nil {
		return nil, err
	}
	idx := Index{}
	for _, e := range all {
		idx[e.GetId()] = e
	}
	return idx, nil
}

// RegPath returns the path of regular-file entry id.
func (idx Index) RegPath(id uint32) (string, error) {
	e, ok := idx[id]
	if !ok || e.GetReg() == nil {
		return "", fmt.Errorf("files.img: no regular file with id %d", id)
	}
	return e.GetReg().GetName(), nil
}
