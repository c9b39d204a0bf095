package mounts

// Dumping a mount namespace.

import (
	"fmt"
	"os"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
	"google.golang.org/protobuf/proto"

	"amber/internal/idmap"
	"amber/internal/image"
)

// DumpOptions are the dump's settings for mounts.
type DumpOptions struct {
	// External maps mountpoints, as the tree sees them, to the keys the
	// images name them by (--external mnt[MOUNTPOINT]:KEY): the restore
	// binds the host path given for the key there.
	External map[string]string
	// Like are the mounts of the tree root's namespace, when the one
	// dumped is another task's (nil for the root's): there a mountpoint
	// of External is external only if it holds the same mount as in the
	// root's (a copy), not one of the task's own that took its place.
	Like []*mnt.MntEntry
	// IDs are the maps of the tree's user namespace (nil: amber's):
	// the images hold the owners of tmpfs files as it sees them.
	IDs *idmap.Pair
}

// IDs returns the ids of the mounts of pid's mount namespace, as the
// mnt_id of its files' fdinfo names them.
func IDs(pid int) (map[int]bool, error) {
	infos, err := readMountinfo(pid)
	if err != nil {
		return nil, err
	}
	ids := map[int]bool{}
	for _, m := range infos {
		ids[int(m.ID)] = true
	}
	return ids, nil
}

// readMountinfo reads /proc/PID/mountinfo.
func readMountinfo(pid int) ([]Info, error) {
	name := fmt.Sprintf("/proc/%d/mountinfo", pid)
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("mount namespace of pid %d: %w", pid, err)
	}
	defer f.Close()
	return ParseMountinfo(f, name)
}

// Dump writes mountpoints-ID.img with the mounts of pid's mount
// namespace (id its id in the images) and the contents of its tmpfs
// mounts, and returns its entries. It fails, naming the mount, if a
// restore could not make one of them again.
func Dump(dir image.Dir, id uint32, pid int, opts DumpOptions) ([]*mnt.MntEntry, error) {
	infos, err := readMountinfo(pid)
	if err != nil {
		return nil, err
	}
	entries := Entries(infos, opts.External)
	if opts.Like != nil {
		keepCopiedExternal(entries, opts.Like)
	}
	steps, err := Plan(entries, externalKeys(entries))
	if err != nil {
		return nil, fmt.Errorf("mount namespace of pid %d: %w", pid, err)
	}
	if err := dumpTmpfses(dir, pid, steps, innerIDs(opts.IDs)); err != nil {
		return nil, err
	}
	msgs := make([]proto.Message, len(entries))
	for i, e := range entries {
		msgs[i] = e
	}
	return entries, image.WriteFile(dir.MountpointsPath(id), image.Mnts, msgs...)
}

// keepCopiedExternal leaves external only the entries that hold, at an
// external mountpoint, the same mount (filesystem and root) as the
// root's namespace has there.
func keepCopiedExternal(entries, like []*mnt.MntEntry) {
	for _, e := range entries {
		if e.GetExtKey() == "" {
			continue
		}
		same := false
		for _, l := range like {
			if l.GetExtKey() == e.GetExtKey() && l.GetRootDev() == e.GetRootDev() && l.GetRoot() == e.GetRoot() {
				same = true
				break
			}
		}
		if !same {
			e.ExtKey = nil
		}
	}
}

// externalKeys maps the keys of the external mounts among entries to
// nothing: a dump only checks that a restore given them can make the
// rest.
func externalKeys(entries []*mnt.MntEntry) map[string]string {
	keys := map[string]string{}
	for _, e := range entries {
		if k := e.GetExtKey(); k != "" {
			keys[k] = ""
		}
	}
	return keys
}

// Load reads mountpoints-ID.img.
func Load(dir image.Dir, id uint32) ([]*mnt.MntEntry, error) {
	return image.ReadFile(dir.MountpointsPath(id), image.Mnts, func() *mnt.MntEntry { return new(mnt.MntEntry) })
}
