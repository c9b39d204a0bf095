package namespaces

// User namespaces: a tree whose root is in a user namespace of its own,
// a child of amber's, with every task of the tree in it and every other
// namespace of the tree that amber dumps owned by it, as a container's
// (rootless Podman's) is. Its uid_map and gid_map, as amber reads them
// (the parent's view of the lower ids), go to userns-ID.img, CRIU's
// UsernsEntry. The restore makes the namespace first, writes its maps
// from amber's side, and makes every other namespace inside it.
//
// Anything else is refused at dump, naming the pid: a user namespace
// nested in another than amber's, a task in a user namespace other than
// its root's, a namespace of the tree owned by a user namespace other
// than the tree's.

import (
	"fmt"
	"os"

	usernsimg "github.com/checkpoint-restore/go-criu/v8/crit/images/userns"
	"golang.org/x/sys/unix"

	"amber/internal/idmap"
	"amber/internal/image"
)

// readMaps reads pid's uid_map and gid_map, as amber sees them.
func readMaps(pid int) (*idmap.Pair, error) {
	var p idmap.Pair
	for _, m := range []struct {
		name string
		to   *idmap.Map
	}{{"uid_map", &p.Uid}, {"gid_map", &p.Gid}} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, m.name))
		if err != nil {
			return nil, fmt.Errorf("user namespace of pid %d: %w", pid, err)
		}
		if *m.to, err = idmap.Parse(string(b)); err != nil {
			return nil, fmt.Errorf("/proc/%d/%s: %w", pid, m.name, err)
		}
	}
	return &p, nil
}

// nsIoctl is the inode of the namespace the ioctl req (NS_GET_USERNS,
// NS_GET_PARENT) gives for the namespace file path.
func nsIoctl(path string, req uint) (uint64, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	got, err := unix.IoctlRetInt(fd, req)
	if err != nil {
		return 0, err
	}
	defer unix.Close(got)
	var st unix.Stat_t
	if err := unix.Fstat(got, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// checkUserNs refuses a root whose user namespace amber cannot make
// again: one whose parent is not amber's, or one that does not own the
// tree's other namespaces of kinds (those amber dumps).
func (t *Table) checkUserNs(root int, kinds []Kind) error {
	parent, err := nsIoctl(fmt.Sprintf("/proc/%d/ns/user", root), unix.NS_GET_PARENT)
	if err != nil {
		return fmt.Errorf("the parent of pid %d's user namespace: %w", root, err)
	}
	if parent != t.self[User] {
		return fmt.Errorf("pid %d is in a user namespace nested in another one than amber's: not supported", root)
	}
	for _, k := range kinds {
		owner, err := nsIoctl(fmt.Sprintf("/proc/%d/ns/%s", root, k.Name), unix.NS_GET_USERNS)
		if err != nil {
			return fmt.Errorf("the owner of pid %d's %s namespace: %w", root, k.Name, err)
		}
		if owner != t.root[User] {
			return fmt.Errorf("pid %d: its %s namespace is owned by another user namespace than its own (inode %d, not %d): not supported", root, k.Name, owner, t.root[User])
		}
	}
	return nil
}

// UserMaps returns the maps of the tree's user namespace, nil if the
// tree is in amber's: ids in the images are the namespace's.
func (t *Table) UserMaps() *idmap.Pair { return t.users }

// dumpUserNs writes userns-ID.img.
func dumpUserNs(dir image.Dir, id uint32, p *idmap.Pair) error {
	e := &usernsimg.UsernsEntry{UidMap: p.Uid.ToImage(), GidMap: p.Gid.ToImage()}
	return image.WriteFile(dir.UsernsPath(id), image.Userns, e)
}

// ReadUserMaps reads the maps of user namespace id from userns-ID.img.
func ReadUserMaps(dir image.Dir, id uint32) (*idmap.Pair, error) {
	p := dir.UsernsPath(id)
	e, err := image.ReadOne(p, image.Userns, func() *usernsimg.UsernsEntry { return new(usernsimg.UsernsEntry) })
	if err != nil {
		return nil, err
	}
	m := &idmap.Pair{Uid: idmap.FromImage(e.GetUidMap()), Gid: idmap.FromImage(e.GetGidMap())}
	if len(m.Uid) == 0 || len(m.Gid) == 0 {
		return nil, fmt.Errorf("%s: no uid or gid extent", p)
	}
	return m, nil
}

// WriteUserMaps writes the maps m into the user namespace of pid, a new
// one with none yet, from amber's side (its parent's): the lower ids
// are amber's. Each map takes one write.
func WriteUserMaps(pid int, m *idmap.Pair) error {
	for _, w := range []struct {
		name string
		m    idmap.Map
	}{{"uid_map", m.Uid}, {"gid_map", m.Gid}} {
		path := fmt.Sprintf("/proc/%d/%s", pid, w.name)
		if err := os.WriteFile(path, []byte(w.m.String()), 0); err != nil {
			return fmt.Errorf("write %q to %s: %w", w.m.String(), path, err)
		}
	}
	return nil
}
