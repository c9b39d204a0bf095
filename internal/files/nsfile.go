package files

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"syscall"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/ns"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/idmap"
	"amber/internal/namespaces"
)

// Namespace files (CRIU's NsFileEntry, files.img type NS): a descriptor
// of /proc/PID/ns/NAME (nsfs), which /proc/PID/fd shows as "net:[INO]".
// The dump records which namespace it is by the namespace's id in the
// images (ids-PID.img, the inventory's root_ids): one of the tree's, or
// one of amber's own, which is the tree's too for every kind amber does
// not dump. Restore opens the task's own namespace of that kind
// (/proc/self/ns/NAME) if it is that one, else takes the restorer's own
// from amber, which opened it beforehand (HostNs).

// NsLookup finds the id in the images and the clone flag of the
// namespace of kind name (as /proc/PID/ns names it) with inode ino; ok
// is false for a namespace neither of the tree nor of amber.
type NsLookup func(name string, ino uint64) (id uint32, flag uintptr, ok bool)

// SetNsLookup tells the dumper how to name the namespaces that namespace
// files point to.
func (d *Dumper) SetNsLookup(f NsLookup) {
	d.nsIDs = f
	d.sockets.SetNetnsLookup(func(ino uint64) (uint32, bool) {
		id, _, ok := f("net", ino)
		return id, ok
	})
}

// SetUserMaps says the tree is in a user namespace of its own with these
// maps: the owners the images hold are that namespace's.
func (d *Dumper) SetUserMaps(users *idmap.Pair) {
	d.users = users
	d.sockets.SetUserMaps(users)
}

// inward is st with its owner as the tree's user namespace sees it, the
// images' view (CRIU's userns_uid): amber's stat sees its own.
func (d *Dumper) inward(st *syscall.Stat_t) *syscall.Stat_t {
	in := *st
	in.Uid, in.Gid = d.users.InnerUid(st.Uid), d.users.InnerGid(st.Gid)
	return &in
}

// nsLinkRE is what /proc/PID/fd shows for a namespace file.
var nsLinkRE = regexp.MustCompile(`^(cgroup|ipc|mnt|net|pid|time|user|uts):\[[0-9]+\]$`)

func isNsLink(link string) bool { return nsLinkRE.MatchString(link) }

// addNsFile records the namespace file whose link is link.
func (d *Dumper) addNsFile(link string, st os.FileInfo, flags uint32) (uint32, fdinfo.FdTypes, error) {
	name, ino := nsLinkRE.FindStringSubmatch(link)[1], inode(st)
	var id uint32
	var flag uintptr
	ok := false
	if d.nsIDs != nil {
		id, flag, ok = d.nsIDs(name, ino)
	}
	if !ok {
		return 0, 0, fmt.Errorf("%s: a %s namespace neither of the tree nor amber's: not supported", link, name)
	}
	return d.Table.addEntry(fdinfo.FdTypes_NS, func(e *fdinfo.FileEntry, fid uint32) {
		e.Nsf = &ns.NsFileEntry{Id: proto.Uint32(fid), NsId: proto.Uint32(id), NsCflag: proto.Uint32(uint32(flag)), Flags: proto.Uint32(flags)}
	})
}

// nsKind is the kind of namespace of clone flag flag.
func nsKind(flag uint32) (namespaces.Kind, bool) {
	for _, k := range namespaces.Kinds {
		if uint32(k.Flag) == flag {
			return k, true
		}
	}
	return namespaces.Kind{}, false
}

// makeNsFile opens namespace file e: the task's own namespace of its
// kind, or the restorer's taken from amber.
func (p *fdPlanner) makeNsFile(e *fdinfo.FileEntry) (int, error) {
	nf := e.GetNsf()
	if nf == nil {
		return 0, fmt.Errorf("file id %d: NS entry without nsf", e.GetId())
	}
	k, ok := nsKind(nf.GetNsCflag())
	if !ok {
		return 0, fmt.Errorf("file id %d: namespace file of clone flag %#x: no such kind of namespace", e.GetId(), nf.GetNsCflag())
	}
	if own, ok := namespaces.IDOf(p.in.NsIDs, k); ok && own == nf.GetNsId() {
		return p.b.Open(fmt.Sprintf("namespace file id %d", e.GetId()), "/proc/self/ns/"+k.Name,
			int(nf.GetFlags()&unix.O_ACCMODE), 0), nil
	}
	if fd, ok := p.in.HostNs[nf.GetNsId()]; ok {
		return p.takeFromAmber(fd, fmt.Sprintf("the restorer's %s namespace, file id %d", k.Name, e.GetId()))
	}
	return 0, fmt.Errorf("file id %d: a %s namespace (id %d) neither the task's nor the dumper's: not supported", e.GetId(), k.Name, nf.GetNsId())
}

// HostNs are amber's descriptors of its own namespaces, standing for the
// dumper's in the namespace files of the images.
type HostNs struct {
	// Fds are amber's descriptors by namespace id in the images.
	Fds map[uint32]int
}

// OpenHostNs opens, in amber, its own namespace of each kind that a
// namespace file of idx points to as the dumper's (rootIDs, the
// inventory's root_ids).
func OpenHostNs(idx Index, rootIDs *criucore.TaskKobjIdsEntry) (*HostNs, error) {
	h := &HostNs{Fds: map[uint32]int{}}
	// The namespace files are picked out before sorting: a table may hold
	// tens of thousands of other files.
	var ids []uint32
	for id, e := range idx {
		if e.GetNsf() != nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		nf := idx[id].GetNsf()
		k, ok := nsKind(nf.GetNsCflag())
		if !ok {
			continue
		}
		if dumper, ok := namespaces.IDOf(rootIDs, k); !ok || dumper != nf.GetNsId() {
			continue
		}
		if _, done := h.Fds[nf.GetNsId()]; done {
			continue
		}
		fd, err := unix.Open("/proc/self/ns/"+k.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("files.img: namespace file id %d: amber's %s namespace: %w", id, k.Name, err)
		}
		h.Fds[nf.GetNsId()] = fd
	}
	return h, nil
}

// Close closes amber's descriptors.
func (h *HostNs) Close() {
	for _, fd := range h.Fds {
		unix.Close(fd)
	}
	h.Fds = nil
}
