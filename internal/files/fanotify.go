package files

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fsnotify"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/fsroot"
	"amber/internal/plan"
	"amber/internal/proc"
)

// A fanotify group is its init flags and its marks (CRIU's fsnotify.c,
// FanotifyFileEntry with its FanotifyMarkEntry list), from fdinfo:
//
//	fanotify flags:12 event-flags:8000
//	fanotify ino:98a5ec sdev:fe00000 mflags:0 mask:3b ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:eca5...
//	fanotify mnt_id:1a mflags:40 mask:40000038 ignored_mask:3
//
// An inode mark is stored with its file handle and, resolved at dump as
// for inotify, its path; a mount mark with its mount's id and mount point
// as the task sees it. Restore makes the group with fanotify_init and
// adds each mark with fanotify_mark (the mask, then the ignored mask), in
// the order that lists them in fdinfo as before.
// Filesystem marks and events not read yet are not kept: the first
// refuses the dump, the second is lost with a warning, as with criu.

// fanotifyLink is what /proc/PID/fd shows for a fanotify group.
const fanotifyLink = "anon_inode:[fanotify]"

// addFanotify records the fanotify group at pid's fd, whose fdinfo is
// info.
func (t *Table) addFanotify(pid, fd int, info proc.FdInfo, flags uint32, warnf func(string, ...any)) (uint32, fdinfo.FdTypes, error) {
	if queued, err := inotifyQueued(pid, fd); err != nil {
		return 0, 0, fmt.Errorf("fanotify: %w", err)
	} else if queued > 0 && warnf != nil {
		warnf("pid %d fd %d: the %d bytes of fanotify events not read yet are lost at restore (as with criu)", pid, fd, queued)
	}
	ffe := &fsnotify.FanotifyFileEntry{Flags: proto.Uint32(flags), Fown: newFown()}
	for _, line := range info.ExtraLines {
		if !strings.HasPrefix(line, "fanotify ") {
			continue
		}
		if err := parseFanotifyLine(t.root, pid, ffe, fdinfoFields(line)); err != nil {
			return 0, 0, fmt.Errorf("fanotify: fdinfo %q: %w", line, err)
		}
	}
	if ffe.Faflags == nil {
		return 0, 0, fmt.Errorf("fanotify: fdinfo has no \"fanotify flags\" line")
	}
	return t.addEntry(fdinfo.FdTypes_FANOTIFY, func(e *fdinfo.FileEntry, id uint32) {
		ffe.Id = proto.Uint32(id)
		for _, m := range ffe.Mark {
			m.Id = proto.Uint32(id)
		}
		e.Ffy = ffe
	})
}

// parseFanotifyLine adds what one "fanotify" line of fdinfo of pid's
// says to ffe; root is the tree's (nil: amber's).
func parseFanotifyLine(root *fsroot.Root, pid int, ffe *fsnotify.FanotifyFileEntry, f map[string]string) error {
	if _, ok := f["flags"]; ok {
		v, err := hexFields(f, "flags", "event-flags")
		if err != nil {
			return err
		}
		ffe.Faflags, ffe.Evflags = proto.Uint32(v[0]), proto.Uint32(v[1])
		return nil
	}
	v, err := hexFields(f, "mflags", "mask", "ignored_mask")
	if err != nil {
		return err
	}
	m := &fsnotify.FanotifyMarkEntry{Mflags: proto.Uint32(v[0]), Mask: proto.Uint32(v[1]), IgnoredMask: proto.Uint32(v[2]), SDev: proto.Uint32(0)}
	switch {
	case f["ino"] != "":
		if err := inodeMark(root, m, f); err != nil {
			return err
		}
	case f["mnt_id"] != "":
		if err := mountMark(pid, m, f); err != nil {
			return err
		}
	default:
		return fmt.Errorf("a filesystem mark: not supported (nor by criu)")
	}
	ffe.Mark = append(ffe.Mark, m)
	return nil
}

// inodeMark fills in inode mark m: its inode, handle and path in root.
func inodeMark(root *fsroot.Root, m *fsnotify.FanotifyMarkEntry, f map[string]string) error {
	ino, handle, err := parseInodeHandle(f)
	if err != nil {
		return err
	}
	sdev, err := hexField(f, "sdev", 32)
	if err != nil {
		return err
	}
	path, err := inodePath(root, uint32(sdev), ino, handle)
	if err != nil {
		return fmt.Errorf("inode mark: %w", err)
	}
	handle.Path = proto.String(path)
	m.Type, m.SDev = fsnotify.MarkType_INODE.Enum(), proto.Uint32(uint32(sdev))
	m.Ie = &fsnotify.FanotifyInodeMarkEntry{IIno: proto.Uint64(ino), FHandle: handle}
	return nil
}

// mountMark fills in mount mark m: its mount's id and mount point.
func mountMark(pid int, m *fsnotify.FanotifyMarkEntry, f map[string]string) error {
	id, err := hexField(f, "mnt_id", 32)
	if err != nil {
		return err
	}
	path, err := mountPoint(pid, int(id))
	if err != nil {
		return fmt.Errorf("mount mark: %w", err)
	}
	m.Type = fsnotify.MarkType_MOUNT.Enum()
	m.Me = &fsnotify.FanotifyMountMarkEntry{MntId: proto.Uint32(uint32(id)), Path: proto.String(path)}
	return nil
}

// mountPoint is where mount id is in pid's mount namespace, as pid sees it.
func mountPoint(pid, id int) (string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w := strings.Fields(sc.Text()) // id parent major:minor root mount-point ...
		if len(w) >= 5 && w[0] == strconv.Itoa(id) {
			return proc.UnescapeMountinfo(w[4]), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no mount %d in the mount namespace of pid %d", id, pid)
}

// makeFanotify creates fanotify group e and adds its marks.
func (p *fdPlanner) makeFanotify(e *fdinfo.FileEntry) (int, error) {
	ffe := e.GetFfy()
	if ffe == nil {
		return 0, fmt.Errorf("file id %d: FANOTIFY entry without ffy", e.GetId())
	}
	flags := ffe.GetFaflags()
	if ffe.GetFlags()&unix.O_NONBLOCK != 0 {
		flags |= unix.FAN_NONBLOCK
	}
	fd := p.create(fmt.Sprintf("fanotify file id %d", e.GetId()), unix.SYS_FANOTIFY_INIT, uint64(flags), uint64(ffe.GetEvflags()))
	// The kernel lists a group's marks newest first: adding them from the
	// last listed keeps their order.
	for i, m := range slices.Backward(ffe.GetMark()) {
		path, how, err := markTarget(m)
		if err != nil {
			return 0, fmt.Errorf("fanotify file id %d mark %d: %w", e.GetId(), i, err)
		}
		if _, err := p.in.Stat(path); err != nil {
			return 0, fmt.Errorf("fanotify file id %d mark %d: %s is gone since the dump: %w", e.GetId(), i, path, err)
		}
		how |= uint64(m.GetMflags()) | unix.FAN_MARK_ADD
		for _, mk := range []struct {
			mask  uint32
			extra uint64
		}{{m.GetMask(), 0}, {m.GetIgnoredMask(), unix.FAN_MARK_IGNORED_MASK}} {
			if mk.mask == 0 {
				continue
			}
			p.b.Call(fmt.Sprintf("fanotify fd %d: mark %s flags %#x mask %#x", fd, path, how|mk.extra, mk.mask),
				unix.SYS_FANOTIFY_MARK, uint64(fd), how|mk.extra, uint64(mk.mask), plan.AtFdcwd, p.b.String(path))
		}
	}
	return fd, nil
}

// markTarget is the path mark m is on and the flags that say its kind.
func markTarget(m *fsnotify.FanotifyMarkEntry) (string, uint64, error) {
	switch m.GetType() {
	case fsnotify.MarkType_INODE:
		if path := m.GetIe().GetFHandle().GetPath(); path != "" {
			// The path is the inode's own: never follow it elsewhere.
			return path, unix.FAN_MARK_DONT_FOLLOW, nil
		}
		return "", 0, fmt.Errorf("an inode mark (inode %d) without a path", m.GetIe().GetIIno())
	case fsnotify.MarkType_MOUNT:
		if path := m.GetMe().GetPath(); path != "" {
			return path, unix.FAN_MARK_MOUNT, nil
		}
		return "", 0, fmt.Errorf("a mount mark (mount %d) without a path", m.GetMe().GetMntId())
	}
	return "", 0, fmt.Errorf("a mark of type %v", m.GetType())
}
