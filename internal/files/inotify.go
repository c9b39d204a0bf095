package files

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fh"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fsnotify"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/fsroot"
	"amber/internal/proc"
)

// An inotify instance is its watches (CRIU's fsnotify.c): for each, the
// watch descriptor (wd), the event mask and the watched inode as a file
// handle, from fdinfo:
//
//	inotify wd:4 ino:9842d0 sdev:fe00000 mask:2 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:d0429800025835b8
//
// The dump resolves each handle to a path (open_by_handle_at, then the
// path of the opened file) and stores it in the handle's path field, as
// CRIU does when it cannot rely on handles; restore watches that path. The
// kernel numbers watches from 1 up, never reusing a number, so adding the
// watches in wd order gives them their numbers back; a number that was
// freed (its watch removed) is skipped by adding and removing a
// placeholder watch and reading away the IN_IGNORED event that leaves.
// Events queued and not read cannot be saved: such an instance fails the
// dump.

// inotifyLink is what /proc/PID/fd shows for an inotify instance.
const inotifyLink = "anon_inode:inotify"

// maxWdGap bounds the placeholder watches one instance may need.
const maxWdGap = 4096

// fhMinWords is fh_entry_sizes.min_entries: CRIU reads a handle as at
// least this many 64-bit words.
const fhMinWords = 16

// inotifyEventSize is sizeof(struct inotify_event) for an event without a
// name, such as IN_IGNORED.
const inotifyEventSize = 16

// addInotify records the inotify instance at pid's fd, whose fdinfo is
// info. Events queued and not read yet cannot be saved without taking them
// from the process: as criu does, they are left out, and warnf says so.
func (t *Table) addInotify(pid, fd int, info proc.FdInfo, flags uint32, warnf func(string, ...any)) (uint32, fdinfo.FdTypes, error) {
	queued, err := inotifyQueued(pid, fd)
	if err != nil {
		return 0, 0, err
	}
	if queued > 0 && warnf != nil {
		warnf("pid %d fd %d: the %d bytes of inotify events not read yet are lost at restore (as with criu)", pid, fd, queued)
	}
	wds, err := parseInotifyWatches(info.ExtraLines)
	if err != nil {
		return 0, 0, fmt.Errorf("inotify: fdinfo: %w", err)
	}
	for _, w := range wds {
		path, err := handlePath(t.root, w)
		if errors.Is(err, errWatchUnlinked) {
			continue // the watch goes with the ghost (inotify_ghost.go)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("inotify wd %d: %w", w.GetWd(), err)
		}
		w.FHandle.Path = proto.String(path)
	}
	return t.addEntry(fdinfo.FdTypes_INOTIFY, func(e *fdinfo.FileEntry, id uint32) {
		for _, w := range wds {
			w.Id = proto.Uint32(id)
		}
		e.Ify = &fsnotify.InotifyFileEntry{Id: proto.Uint32(id), Flags: proto.Uint32(flags), Fown: newFown(), Wd: wds}
	})
}

// inotifyQueued tells how many bytes of events wait in pid's inotify
// instance at fd.
func inotifyQueued(pid, fd int) (int, error) {
	f, err := takeFd(pid, fd)
	if err != nil {
		return 0, fmt.Errorf("inotify: %w", err)
	}
	defer f.Close()
	n, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCINQ) // FIONREAD
	if err != nil {
		return 0, fmt.Errorf("inotify: FIONREAD: %w", err)
	}
	return n, nil
}

// parseInotifyWatches reads the "inotify wd:" lines of fdinfo, in wd
// order.
func parseInotifyWatches(lines []string) ([]*fsnotify.InotifyWdEntry, error) {
	var out []*fsnotify.InotifyWdEntry
	for _, line := range lines {
		if !strings.HasPrefix(line, "inotify wd:") {
			continue
		}
		w, err := parseInotifyWatch(fdinfoFields(line))
		if err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b *fsnotify.InotifyWdEntry) int { return int(a.GetWd()) - int(b.GetWd()) })
	return out, nil
}

func parseInotifyWatch(f map[string]string) (*fsnotify.InotifyWdEntry, error) {
	ino, handle, err := parseInodeHandle(f)
	if err != nil {
		return nil, err
	}
	v, err := hexFields(f, "wd", "sdev", "mask", "ignored_mask")
	if err != nil {
		return nil, err
	}
	return &fsnotify.InotifyWdEntry{
		Wd: proto.Uint32(v[0]), IIno: proto.Uint64(ino), SDev: proto.Uint32(v[1]),
		Mask: proto.Uint32(v[2]), IgnoredMask: proto.Uint32(v[3]), FHandle: handle,
	}, nil
}

// parseInodeHandle reads the inode and file handle fields of an
// fsnotify mark's fdinfo line.
func parseInodeHandle(f map[string]string) (uint64, *fh.FhEntry, error) {
	if _, ok := f["fhandle-bytes"]; !ok {
		return 0, nil, fmt.Errorf("the watched inode has no file handle (its filesystem gives none): it cannot be found again")
	}
	ino, err := hexField(f, "ino", 64)
	if err != nil {
		return 0, nil, err
	}
	v, err := hexFields(f, "fhandle-bytes", "fhandle-type")
	if err != nil {
		return 0, nil, err
	}
	handle, err := hex.DecodeString(f["f_handle"])
	if err != nil || len(handle) != int(v[0]) || len(handle) > 8*fhMinWords {
		return 0, nil, fmt.Errorf("f_handle %q is not %d bytes of hex", f["f_handle"], v[0])
	}
	return ino, &fh.FhEntry{Bytes: proto.Uint32(v[0]), Type: proto.Uint32(v[1]), Handle: handleWords(handle)}, nil
}

// hexFields parses the 32-bit hexadecimal fields keys of f.
func hexFields(f map[string]string, keys ...string) ([]uint32, error) {
	out := make([]uint32, len(keys))
	for i, key := range keys {
		n, err := hexField(f, key, 32)
		if err != nil {
			return nil, err
		}
		out[i] = uint32(n)
	}
	return out, nil
}

// handleWords packs a file handle into the 64-bit words of fh_entry, at
// least fhMinWords of them.
func handleWords(handle []byte) []uint64 {
	padded := make([]byte, max(8*fhMinWords, (len(handle)+7)&^7))
	copy(padded, handle)
	words := make([]uint64, len(padded)/8)
	for i := range words {
		words[i] = binary.LittleEndian.Uint64(padded[8*i:])
	}
	return words
}

// handleBytes unpacks the handle of an fh_entry.
func handleBytes(e *fh.FhEntry) ([]byte, error) {
	var b []byte
	for _, w := range e.GetHandle() {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	if int(e.GetBytes()) > len(b) {
		return nil, fmt.Errorf("file handle of %d bytes holds only %d", e.GetBytes(), len(b))
	}
	return b[:e.GetBytes()], nil
}

// handlePath finds the path, in root, of the inode a watch is on: it
// opens the handle on a mount of the inode's filesystem and reads the
// opened file's path, which must be that inode still.
func handlePath(root *fsroot.Root, w *fsnotify.InotifyWdEntry) (string, error) {
	return inodePath(root, w.GetSDev(), w.GetIIno(), w.GetFHandle())
}

// inodePath finds the path in root (the tree's, nil: amber's) of inode
// ino of device sdev (the kernel's dev_t) from its file handle fh. The
// handle is opened on one of the tree's own mounts, so that the path
// read back is one of the tree's.
func inodePath(root *fsroot.Root, sdev uint32, ino uint64, fhe *fh.FhEntry) (string, error) {
	major, minor := sdev>>20, sdev&0xfffff // the kernel's dev_t
	mnt, err := mountOfDevice(root, major, minor)
	if err != nil {
		return "", err
	}
	handle, err := handleBytes(fhe)
	if err != nil {
		return "", err
	}
	mfd, err := root.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return "", fmt.Errorf("open mount %s of device %d:%d: %w", mnt, major, minor, err)
	}
	defer unix.Close(mfd)
	fd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(int32(fhe.GetType()), handle), unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		return "", fmt.Errorf("open_by_handle_at inode %d on device %d:%d: %w", ino, major, minor, err)
	}
	defer unix.Close(fd)
	path, err := root.PathOf(fd)
	if err != nil {
		return "", fmt.Errorf("inode %d on device %d:%d: %w", ino, major, minor, err)
	}
	if unlinked(fd) {
		return "", fmt.Errorf("inode %d on device %d:%d (%s): %w", ino, major, minor, path, errWatchUnlinked)
	}
	fi, err := root.Lstat(path)
	if err != nil {
		return "", fmt.Errorf("inode %d on device %d:%d has no path (%s: %w): unlinked or out of reach", ino, major, minor, path, err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Ino != ino || unix.Major(st.Dev) != major || unix.Minor(st.Dev) != minor {
		return "", fmt.Errorf("inode %d on device %d:%d has no path (%s is not it): unlinked or out of reach", ino, major, minor, path)
	}
	return path, nil
}

// mountOfDevice finds a mount point of filesystem major:minor in the
// mount namespace of root (nil: amber's), as a path of root, preferring
// one that shows the whole filesystem.
func mountOfDevice(root *fsroot.Root, major, minor uint32) (string, error) {
	f, err := os.Open(root.Mountinfo())
	if err != nil {
		return "", err
	}
	defer f.Close()
	dev := fmt.Sprintf("%d:%d", major, minor)
	found := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mount-point options ...
		w := strings.Fields(sc.Text())
		if len(w) < 5 || w[2] != dev {
			continue
		}
		if w[3] == "/" {
			return proc.UnescapeMountinfo(w[4]), nil
		}
		if found == "" {
			found = proc.UnescapeMountinfo(w[4])
		}
	}
	if found == "" {
		return "", fmt.Errorf("no mount of device %d:%d in the mount namespace of %s", major, minor, root)
	}
	return found, sc.Err()
}

// ResolveInotifyPaths fills in the path of every inotify watch of idx
// that has only a file handle (images of CRIU), from the handle, but of
// those on unlinked files, which go with their ghosts. It must run on the
// machine of the dump, before planning.
func ResolveInotifyPaths(idx Index, x *Extra) error {
	for _, id := range slices.Sorted(maps.Keys(idx)) {
		for _, w := range idx[id].GetIfy().GetWd() {
			if w.GetFHandle().GetPath() != "" || x.watchedGhost(w) != nil {
				continue
			}
			if w.FHandle == nil {
				return fmt.Errorf("files.img: inotify file id %d wd %d: no file handle", id, w.GetWd())
			}
			path, err := handlePath(nil, w)
			if err != nil {
				return fmt.Errorf("files.img: inotify file id %d wd %d: %w", id, w.GetWd(), err)
			}
			w.FHandle.Path = proto.String(path)
		}
	}
	return nil
}

// makeInotify creates inotify instance e and adds its watches so that
// each gets its dumped wd.
func (p *fdPlanner) makeInotify(e *fdinfo.FileEntry) (int, error) {
	ify := e.GetIfy()
	if ify == nil {
		return 0, fmt.Errorf("file id %d: INOTIFY entry without ify", e.GetId())
	}
	wds, err := p.checkWatches(e.GetId(), ify.GetWd())
	if err != nil {
		return 0, err
	}
	// Unlinked files watched are opened first: making one again (its
	// directory may be watched) must queue no event.
	ghostFds := map[uint32]int{}
	for _, w := range wds {
		if w.GetFHandle().GetPath() != "" {
			continue
		}
		if ghostFds[w.GetWd()], err = p.ghostFd(e.GetId(), w); err != nil {
			return 0, err
		}
	}
	fd := p.create(fmt.Sprintf("inotify file id %d", e.GetId()), unix.SYS_INOTIFY_INIT1, nonblock(ify.GetFlags()))
	dummy := placeholderPath(wds)
	next := uint32(1)
	for _, w := range wds {
		for ; next < w.GetWd(); next++ {
			p.skipWd(fd, next, dummy)
		}
		path, follow := w.GetFHandle().GetPath(), uint32(unix.IN_DONT_FOLLOW)
		if path == "" {
			// An unlinked file: its /proc link, which must be followed.
			path, follow = fmt.Sprintf("/proc/self/fd/%d", ghostFds[w.GetWd()]), 0
		}
		// The path is the inode's own: never follow it elsewhere.
		p.b.Call(fmt.Sprintf("inotify fd %d: watch %s mask %#x as wd %d", fd, path, w.GetMask(), w.GetWd()),
			unix.SYS_INOTIFY_ADD_WATCH, uint64(fd), p.b.String(path), uint64(w.GetMask()|follow))
		next = w.GetWd() + 1
	}
	return fd, nil
}

// checkWatches returns the watches of inotify file id in wd order, and
// refuses what cannot be restored: repeated or zero wds, too many freed
// numbers, watches with no path or whose path is gone.
func (p *fdPlanner) checkWatches(id uint32, in []*fsnotify.InotifyWdEntry) ([]*fsnotify.InotifyWdEntry, error) {
	wds := slices.Clone(in)
	slices.SortFunc(wds, func(a, b *fsnotify.InotifyWdEntry) int { return int(a.GetWd()) - int(b.GetWd()) })
	for i, w := range wds {
		if w.GetWd() == 0 || (i > 0 && wds[i-1].GetWd() == w.GetWd()) {
			return nil, fmt.Errorf("inotify file id %d: wd %d is zero or repeated", id, w.GetWd())
		}
		if gaps := int(w.GetWd()) - 1 - i; gaps > maxWdGap {
			return nil, fmt.Errorf("inotify file id %d: wd %d: more than %d freed watch numbers to skip", id, w.GetWd(), maxWdGap)
		}
		path := w.GetFHandle().GetPath()
		if path == "" && p.in.extra().watchedGhost(w) != nil {
			continue
		}
		if path == "" {
			return nil, fmt.Errorf("inotify file id %d wd %d: no path for the watched inode", id, w.GetWd())
		}
		if _, err := p.in.Stat(path); err != nil {
			return nil, fmt.Errorf("inotify file id %d wd %d: watched %s is gone since the dump: %w", id, w.GetWd(), path, err)
		}
	}
	return wds, nil
}

// placeholderPath picks an inode none of the watches is on.
func placeholderPath(wds []*fsnotify.InotifyWdEntry) string {
	for _, c := range []string{"/", "/proc", "/sys", "/dev"} {
		if !slices.ContainsFunc(wds, func(w *fsnotify.InotifyWdEntry) bool { return w.GetFHandle().GetPath() == c }) {
			return c
		}
	}
	return "/proc/self"
}

// skipWd plans using up watch number wd of inotify fd: a placeholder
// watch takes it and is removed, and the IN_IGNORED event its removal
// queues is read away.
func (p *fdPlanner) skipWd(fd int, wd uint32, path string) {
	p.b.Call(fmt.Sprintf("inotify fd %d: placeholder watch on %s as wd %d", fd, path, wd),
		unix.SYS_INOTIFY_ADD_WATCH, uint64(fd), p.b.String(path), unix.IN_DELETE_SELF|unix.IN_DONT_FOLLOW)
	p.b.Call(fmt.Sprintf("inotify fd %d: remove placeholder wd %d", fd, wd), unix.SYS_INOTIFY_RM_WATCH, uint64(fd), uint64(wd))
	p.b.Call(fmt.Sprintf("inotify fd %d: read away IN_IGNORED of wd %d", fd, wd),
		unix.SYS_READ, uint64(fd), p.b.Bytes(make([]byte, inotifyEventSize)), inotifyEventSize)
}
