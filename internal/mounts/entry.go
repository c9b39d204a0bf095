package mounts

// MntEntry, the image of one mount, from a line of mountinfo.

import (
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// fsTypes are the filesystems CRIU names by code in MntEntry.fstype; any
// other is UNSUPPORTED (CRIU refuses fsname but for AUTO): such a mount
// can only be the root, a bind or external.
var fsTypes = map[string]mnt.Fstype{
	"proc": mnt.Fstype_PROC, "sysfs": mnt.Fstype_SYSFS, "devtmpfs": mnt.Fstype_DEVTMPFS,
	"binfmt_misc": mnt.Fstype_BINFMT_MISC, "tmpfs": mnt.Fstype_TMPFS, "devpts": mnt.Fstype_DEVPTS,
	"simfs": mnt.Fstype_SIMFS, "pstore": mnt.Fstype_PSTORE, "securityfs": mnt.Fstype_SECURITYFS,
	"fusectl": mnt.Fstype_FUSECTL, "debugfs": mnt.Fstype_DEBUGFS, "cgroup": mnt.Fstype_CGROUP,
	"aufs": mnt.Fstype_AUFS, "mqueue": mnt.Fstype_MQUEUE, "fuse": mnt.Fstype_FUSE,
	"overlay": mnt.Fstype_OVERLAYFS, "autofs": mnt.Fstype_AUTOFS, "tracefs": mnt.Fstype_TRACEFS,
	"cgroup2": mnt.Fstype_CGROUP2,
}

// fsName is the filesystem type to mount an entry with.
func fsName(e *mnt.MntEntry) string {
	if e.GetFsname() != "" {
		return e.GetFsname()
	}
	for name, code := range fsTypes {
		if uint32(code) == e.GetFstype() {
			return name
		}
	}
	return ""
}

// kdev encodes a device as the kernel's internal dev_t, as CRIU's
// root_dev (MKKDEV: major << 20 | minor).
func kdev(major, minor uint32) uint32 { return major<<20 | minor }

// propagation are the MS_ flags of a mount's propagation type.
const propagation = unix.MS_SHARED | unix.MS_SLAVE | unix.MS_UNBINDABLE | unix.MS_PRIVATE

// entryOf makes the image entry of m. extKey, if not empty, marks it as
// external under that key.
func entryOf(m Info, extKey string) *mnt.MntEntry {
	flags := mntFlags(m.Options)
	if m.Shared != 0 {
		flags |= unix.MS_SHARED
	}
	if m.Master != 0 {
		flags |= unix.MS_SLAVE
	}
	if m.Unbindable {
		flags |= unix.MS_UNBINDABLE
	}
	sb, opts := sbFlags(m.SuperOptions)
	e := &mnt.MntEntry{
		Fstype:      proto.Uint32(uint32(fsTypes[m.FSType])),
		MntId:       proto.Uint32(m.ID),
		RootDev:     proto.Uint32(kdev(m.Major, m.Minor)),
		ParentMntId: proto.Uint32(m.Parent),
		Flags:       proto.Uint32(flags),
		Root:        proto.String(m.Root),
		Mountpoint:  proto.String(m.Mountpoint),
		Source:      proto.String(m.Source),
		Options:     proto.String(opts),
		SharedId:    proto.Uint32(m.Shared),
		MasterId:    proto.Uint32(m.Master),
		SbFlags:     proto.Uint32(sb),
	}
	if extKey != "" {
		e.ExtKey = proto.String(extKey)
	}
	return e
}

// Entries makes the image entries of a namespace's mounts. external maps
// mountpoints (--external mnt[MOUNTPOINT]:KEY) to their keys. A key for
// a mountpoint the namespace does not have is ignored, as CRIU does:
// runc names every device node it makes in /dev, whether it bind-mounted
// it or made it with mknod. A mount that needs a key and has none is
// refused later, by Plan, naming it.
func Entries(infos []Info, external map[string]string) []*mnt.MntEntry {
	var out []*mnt.MntEntry
	for _, m := range infos {
		out = append(out, entryOf(m, external[m.Mountpoint]))
	}
	return out
}
