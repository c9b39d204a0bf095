package namespaces

// The ids of namespaces in the images, and which namespaces a dump
// saves and a restore creates.

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"google.golang.org/protobuf/proto"

	"amber/internal/idmap"
	"amber/internal/image"
	"amber/internal/proc"
)

// Dumped are the kinds of namespaces amber dumps and restores when the
// root of the tree is not in amber's own. A cgroup namespace has no
// image of its own: its root is the cgns_prefix of cgroup.img's paths
// (package cgroups). A user namespace is made first, the others in it
// (userns.go).
var Dumped = []Kind{User, PID, IPC, UTS, Mnt, Net, Time, Cgroup}

// Table numbers the namespaces of one dump: amber's own are 1 to 8 in
// the order of Kinds, any other gets the next id from 9 on.
type Table struct {
	self map[Kind]uint64 // amber's own namespaces, by inode
	root map[Kind]uint64 // the root task's
	own  map[Kind]bool   // kinds whose root namespace is dumped
	ids  map[Kind]map[uint64]uint32
	// emptyNet leaves the root's network namespace undumped (empty_ns):
	// the restore makes a new one and leaves it as it comes.
	emptyNet bool
	// extNet is the network namespace --external net[INO]:KEY names.
	extNet ExtNet
	// next is the id the next namespace found gets.
	next uint32
	// mnts and nets are the tree's mount and network namespaces
	// (AddTasks), the root's first.
	mnts, nets []NsTask
	// users are the maps of the root's user namespace, if it is not
	// amber's (userns.go): nil otherwise.
	users *idmap.Pair
}

// NsTask is a namespace of the tree: its id in the images and a task
// in it.
type NsTask struct {
	ID  uint32
	Pid int
}

// ExtNet is a network namespace outside the dump, CRIU's --external
// net[INO]:KEY (runc's for a container whose namespace has a path, as
// Podman's have): the dump records only KEY, and the restore joins the
// namespace that --inherit-fd fd[N]:KEY gives.
type ExtNet struct {
	Ino uint64 // the namespace's inode
	Key string // "" for none
}

// SetExtNet says which network namespace is external: if it is the
// root's, its contents are not dumped, its key is.
func (t *Table) SetExtNet(ext ExtNet) { t.extNet = ext }

// netExternal says the root's network namespace is the external one.
func (t *Table) netExternal() bool {
	return t.extNet.Key != "" && t.extNet.Ino == t.root[Net]
}

// SetEmptyNet says whether the root's network namespace, if not
// amber's, is dumped (false) or left to the container engine, which
// sets up the new one the restore makes (true: --empty-ns net).
func (t *Table) SetEmptyNet(empty bool) { t.emptyNet = empty }

// NewTable reads amber's own namespaces, then the namespaces of root, the
// root of the tree to dump. A root in a namespace other than amber's, of
// a kind amber does not dump, is dumped as if it were in amber's (and is
// restored in the restorer's): warnf says so. A root in a pid namespace
// other than amber's whose init it is not is dumped with its pids in
// amber's.
func NewTable(root int, warnf func(format string, args ...any)) (*Table, error) {
	t := &Table{self: map[Kind]uint64{}, root: map[Kind]uint64{}, own: map[Kind]bool{},
		ids: map[Kind]map[uint64]uint32{}}
	for i, k := range Kinds {
		ino, err := inode(os.Getpid(), k)
		if err != nil {
			return nil, err
		}
		t.self[k] = ino
		t.ids[k] = map[uint64]uint32{ino: uint32(i + 1)}
		if t.root[k], err = inode(root, k); err != nil {
			return nil, err
		}
	}
	next := uint32(len(Kinds))
	for _, k := range Kinds {
		if t.root[k] == t.self[k] {
			continue
		}
		ok, why, err := dumpable(k, root)
		if err != nil {
			return nil, err
		}
		if !ok {
			warnf("pid %d is in a %s namespace other than amber's (%s): it is dumped as amber's, and restored in the restorer's", root, k.Name, why)
			continue
		}
		t.own[k] = true
		next++
		t.ids[k][t.root[k]] = next
	}
	t.next = next + 1
	if t.own[User] {
		var others []Kind
		for _, k := range Kinds {
			if t.own[k] && k != User {
				others = append(others, k)
			}
		}
		if err := t.checkUserNs(root, others); err != nil {
			return nil, err
		}
		users, err := readMaps(root)
		if err != nil {
			return nil, err
		}
		t.users = users
	}
	if t.own[Mnt] {
		t.mnts = []NsTask{{t.ids[Mnt][t.root[Mnt]], root}}
	}
	if t.own[Net] {
		t.nets = []NsTask{{t.ids[Net][t.root[Net]], root}}
	}
	return t, nil
}

// AddTasks numbers the mount and network namespaces of pids, the tasks
// of the tree, when the root's of that kind is dumped: a task may have
// unshared one of its own (CLONE_NEWNS, CLONE_NEWNET) or entered
// another (setns), and each is dumped. One in amber's own is refused:
// the restore could not make it again. So is a network namespace
// other than the root's when the root's is not dumped (--empty-ns net,
// --external net[]): its links could not be made again beside it.
func (t *Table) AddTasks(pids []int) error {
	for _, k := range []Kind{Mnt, Net} {
		if !t.own[k] {
			continue
		}
		list := &t.mnts
		if k == Net {
			list = &t.nets
		}
		for _, pid := range pids {
			ino, err := inode(pid, k)
			if err != nil {
				return err
			}
			if _, ok := t.ids[k][ino]; ok {
				if ino == t.self[k] {
					return fmt.Errorf("pid %d is in amber's %s namespace, its root %d in one of its own: not supported", pid, k.Name, (*list)[0].Pid)
				}
				continue
			}
			if k == Net && (t.emptyNet || t.netExternal()) {
				return fmt.Errorf("pid %d is in a network namespace other than its root's, whose namespace is left to the container engine: not supported", pid)
			}
			t.ids[k][ino] = t.next
			*list = append(*list, NsTask{t.next, pid})
			t.next++
		}
	}
	return nil
}

// MntNamespaces lists the tree's mount namespaces that are dumped, the
// root's first: none if the root is in amber's.
func (t *Table) MntNamespaces() []NsTask { return t.mnts }

// NetNamespaces lists the tree's network namespaces that are dumped,
// the root's first: none if the root is in amber's.
func (t *Table) NetNamespaces() []NsTask { return t.nets }

// dumpable tells whether amber dumps root's namespace of kind k, and if
// not why.
func dumpable(k Kind, root int) (bool, string, error) {
	switch k {
	case User, UTS, IPC, Mnt, Net, Cgroup:
		return true, "", nil
	case Time:
		return true, "", nestedTime(root)
	case PID:
		st, err := proc.ReadStatus(root)
		if err != nil {
			return false, "", err
		}
		if n := len(st.NSpid); n < 2 || st.NSpid[n-1] != 1 {
			return false, "it is not the namespace's init", nil
		}
		return true, "", nil
	}
	return false, "amber does not dump " + k.Name + " namespaces", nil
}

// OwnPidNamespace tells whether the root of the tree is the init of a
// pid namespace amber dumps: the images then hold the pids of that
// namespace.
func (t *Table) OwnPidNamespace() bool { return t.own[PID] }

// Own returns the id of the root's namespace of kind k, if amber dumps
// it (a namespace other than amber's, of a kind in Dumped).
func (t *Table) Own(k Kind) (uint32, bool) {
	if !t.own[k] {
		return 0, false
	}
	return t.ids[k][t.root[k]], true
}

// FileID returns the id in the images of the namespace of kind name
// (as /proc/PID/ns names it) whose inode is ino, and its clone flag: a
// namespace of the tree, or one of amber's. ok is false for any other.
func (t *Table) FileID(name string, ino uint64) (id uint32, flag uintptr, ok bool) {
	for _, k := range Kinds {
		if k.Name == name {
			id, ok = t.ids[k][ino]
			return id, k.Flag, ok
		}
	}
	return 0, 0, false
}

// Self returns amber's own ids, for the inventory's root_ids.
func (t *Table) Self() *criucore.TaskKobjIdsEntry {
	e := &criucore.TaskKobjIdsEntry{}
	for _, k := range Kinds {
		*field(e, k) = proto.Uint32(t.ids[k][t.self[k]])
	}
	return e
}

// Fill sets the namespace ids of pid, a task of the tree, in e. A task of
// a kind amber dumps must be in its root's namespace of that kind (but
// for a mount or network namespace AddTasks numbered), and
// every task in its root's time namespace, whether amber dumps it or
// not, with its children born there too: the restore cannot give a
// clock back to one task alone.
func (t *Table) Fill(e *criucore.TaskKobjIdsEntry, pid int) error {
	// Every task shares its root's user namespace, amber's or the
	// tree's: ids and capabilities are dumped as that one sees them.
	ino, err := inode(pid, User)
	if err != nil {
		return err
	}
	if ino != t.root[User] {
		return fmt.Errorf("pid %d is in a user namespace other than its root's (a nested or second one): not supported", pid)
	}
	for _, k := range Kinds {
		if !t.own[k] && k != Time {
			*field(e, k) = proto.Uint32(t.ids[k][t.self[k]])
			continue
		}
		ino, err := inode(pid, k)
		if err != nil {
			return err
		}
		if k == Mnt || k == Net {
			id, ok := t.ids[k][ino]
			if !ok {
				return fmt.Errorf("pid %d is in a %s namespace the dump did not number", pid, k.Name)
			}
			*field(e, k) = proto.Uint32(id)
			continue
		}
		if ino != t.root[k] {
			return fmt.Errorf("pid %d is in a %s namespace of its own, not its root's: not supported", pid, k.Name)
		}
		if k == Time {
			if err := nestedTime(pid); err != nil {
				return err
			}
		}
		*field(e, k) = proto.Uint32(t.ids[k][ino])
	}
	return nil
}

// Dump writes the images of the namespaces of the tree amber dumps:
// userns-ID.img, utsns-ID.img, ipcns-var-ID.img, timens-ID.img, netdev-ID.img and netns-ID.img
// (unless SetEmptyNet). root is the tree's root.
func (t *Table) Dump(dir image.Dir, root int) error {
	if t.own[User] {
		if err := dumpUserNs(dir, t.ids[User][t.root[User]], t.users); err != nil {
			return err
		}
	}
	if t.own[UTS] {
		if err := dumpUTS(dir, t.ids[UTS][t.root[UTS]], root); err != nil {
			return err
		}
	}
	if t.own[IPC] {
		if err := dumpIPC(dir, t.ids[IPC][t.root[IPC]], root); err != nil {
			return err
		}
	}
	if t.own[Time] {
		if err := dumpTime(dir, t.ids[Time][t.root[Time]], root); err != nil {
			return err
		}
	}
	switch {
	case t.own[Net] && t.netExternal():
		return dumpExtNet(dir, t.ids[Net][t.root[Net]], t.extNet.Key)
	case t.own[Net] && !t.emptyNet:
		for _, n := range t.nets {
			if err := dumpNet(dir, n.ID, n.Pid); err != nil {
				return err
			}
		}
	}
	return nil
}

// IDOf returns the id of the namespace of kind k in e, if e has one.
func IDOf(e *criucore.TaskKobjIdsEntry, k Kind) (uint32, bool) {
	if e == nil || *field(e, k) == nil {
		return 0, false
	}
	return **field(e, k), true
}

// field is the id field of kind k in e.
func field(e *criucore.TaskKobjIdsEntry, k Kind) **uint32 {
	switch k {
	case PID:
		return &e.PidNsId
	case Net:
		return &e.NetNsId
	case IPC:
		return &e.IpcNsId
	case UTS:
		return &e.UtsNsId
	case Time:
		return &e.TimeNsId
	case Mnt:
		return &e.MntNsId
	case User:
		return &e.UserNsId
	}
	return &e.CgroupNsId
}

// CloneFlags returns the namespaces to create for the root task of a
// restore: those whose ids in the root's ids differ from the inventory's
// root_ids (the dumper's). A kind amber does not restore is an error
// naming it.
func CloneFlags(rootIDs, root *criucore.TaskKobjIdsEntry) (uintptr, error) {
	var flags uintptr
	for _, k := range Kinds {
		if *field(rootIDs, k) == nil || *field(root, k) == nil || **field(rootIDs, k) == **field(root, k) {
			continue
		}
		if !dumpedKind(k) {
			return 0, fmt.Errorf("the tree was dumped in a %s namespace of its own: amber cannot restore %s namespaces", k.Name, k.Name)
		}
		flags |= k.Flag
	}
	return flags, nil
}

func dumpedKind(k Kind) bool {
	for _, d := range Dumped {
		if d == k {
			return true
		}
	}
	return false
}

// Restore sets up the namespaces pid was created in with flags
// (CloneFlags) as the images say: the names of its UTS namespace, the
// settings of its IPC namespace. ids are pid's ids.
func Restore(dir image.Dir, pid int, flags uintptr, ids *criucore.TaskKobjIdsEntry) error {
	if flags&UTS.Flag != 0 {
		if err := restoreUTS(dir, ids.GetUtsNsId(), pid); err != nil {
			return err
		}
	}
	if flags&IPC.Flag != 0 {
		if err := restoreIPC(dir, ids.GetIpcNsId(), pid); err != nil {
			return err
		}
	}
	return nil
}

// ParseExtNet reads CRIU's --external net[INO]:KEY. ok is false for
// another kind of external resource.
func ParseExtNet(val string) (ext ExtNet, ok bool, err error) {
	rest, ok := strings.CutPrefix(val, "net[")
	if !ok {
		return ExtNet{}, false, nil
	}
	ino, key, found := strings.Cut(rest, "]:")
	n, perr := strconv.ParseUint(ino, 10, 64)
	if !found || perr != nil || key == "" {
		return ExtNet{}, true, fmt.Errorf("external %q: want net[INODE]:KEY", val)
	}
	return ExtNet{Ino: n, Key: key}, true, nil
}
