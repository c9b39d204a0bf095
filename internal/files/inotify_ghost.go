package files

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fsnotify"
	"golang.org/x/sys/unix"
)

// An inotify watch may be on an unlinked file that the tree still holds
// open (a ghost, ghost.go): its inode has no path to store. As CRIU, the
// dump leaves the watch's path out and the restore finds the ghost by
// device and inode; the task then watches the ghost through the /proc
// link of a descriptor of it (/proc/self/fd/N, followed), which it opens
// first if its turn has not come yet. A watch on an unlinked file that no
// descriptor of the tree holds is refused at dump.

// errWatchUnlinked says a watched inode is an unlinked file.
var errWatchUnlinked = errors.New("unlinked")

// unlinked tells a file with no link left (fd is an O_PATH descriptor).
func unlinked(fd int) bool {
	var st unix.Stat_t
	return unix.Fstat(fd, &st) == nil && st.Nlink == 0
}

// watchDevs are the two encodings a watch's device may have in a ghost's
// entry: the kernel's (major<<20 | minor, which fdinfo shows and CRIU
// keeps) and user space's (st_dev, which amber keeps).
func watchDevs(w *fsnotify.InotifyWdEntry) [2]uint32 {
	sdev := w.GetSDev()
	return [2]uint32{sdev, uint32(unix.Mkdev(sdev>>20, sdev&0xfffff))}
}

// watchedGhost is the ghost watch w is on, if any.
func (x *Extra) watchedGhost(w *fsnotify.InotifyWdEntry) *Ghost {
	if x == nil {
		return nil
	}
	devs := watchDevs(w)
	for _, id := range slices.Sorted(maps.Keys(x.Ghosts)) {
		g := x.Ghosts[id]
		if g.Entry.GetIno() == w.GetIIno() && slices.Contains(devs[:], g.Entry.GetDev()) {
			return g
		}
	}
	return nil
}

// ghostFd returns a descriptor the task has of the ghost watch w of
// inotify file id is on: one already made, or the ghost made now (its
// files parked for their turn).
func (p *fdPlanner) ghostFd(id uint32, w *fsnotify.InotifyWdEntry) (int, error) {
	g := p.in.extra().watchedGhost(w)
	var mine *fdinfo.FileEntry
	for _, f := range p.ghostFiles(g) {
		if fd, ok := p.placed[f.GetId()]; ok {
			return fd, nil
		}
		if fd, ok := p.have[f.GetId()]; ok {
			return fd, nil
		}
		if mine == nil && p.holds(f.GetId()) {
			mine = f
		}
	}
	if mine == nil {
		return 0, fmt.Errorf("inotify file id %d wd %d: the watched unlinked file (ghost %d) is open in another task only: not supported",
			id, w.GetWd(), g.ID)
	}
	fd, err := p.make(mine.GetId())
	if err != nil {
		return 0, err
	}
	fd = p.b.MoveAbove(fd, p.safe)
	p.park(mine.GetId(), fd)
	return fd, nil
}

// holds tells whether the task has a descriptor of file id.
func (p *fdPlanner) holds(id uint32) bool {
	return slices.ContainsFunc(p.in.Fds, func(f *fdinfo.FdinfoEntry) bool { return f.GetId() == id })
}

// checkGhostWatches refuses, at the end of a dump, a watch left without
// a path whose inode is no ghost of the dump.
func (d *Dumper) checkGhostWatches() error {
	for _, e := range d.Table.entries {
		for _, w := range e.GetIfy().GetWd() {
			if w.GetFHandle().GetPath() != "" || d.ghosts.hasInode(watchDevs(w), w.GetIIno()) {
				continue
			}
			return fmt.Errorf("inotify file id %d wd %d: watches unlinked inode %d, which no descriptor of the tree holds open",
				e.GetId(), w.GetWd(), w.GetIIno())
		}
	}
	return nil
}

// hasInode tells whether a ghost of the dump is inode ino on one of devs.
func (g *ghostState) hasInode(devs [2]uint32, ino uint64) bool {
	if g == nil {
		return false
	}
	for k := range g.ids {
		if k.ino == ino && slices.Contains(devs[:], uint32(k.dev)) {
			return true
		}
	}
	return false
}
