package files

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	ghostfile "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	remap "github.com/checkpoint-restore/go-criu/v8/crit/images/remap-file-path"
	timeimg "github.com/checkpoint-restore/go-criu/v8/crit/images/time"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/plan"
	"amber/internal/proc"
)

// Unlinked ("ghost") files, as CRIU's files-reg.c has them: a file still
// open but removed from its directory (/proc shows its path with
// " (deleted)"): a regular file, a directory (open, or a working
// directory), a symbolic link opened O_PATH|O_NOFOLLOW, a FIFO or a
// character device. Its files.img entry is an ordinary regular file
// with the path it had (a FIFO's is the regf_id entry of its FIFO
// entry); remap-fpath.img maps that entry to a ghost (RemapFilePathEntry,
// type GHOST) and ghost-file-ID.img holds the ghost: a GhostFileEntry
// (owner, mode, times; size, rdev or symlnk_target by kind), then, for a
// regular file, the contents, raw for a small file and as chunks
// (GhostChunkEntry, then the bytes) for a larger one, holes left out.
// Every open file of one unlinked file maps to the same ghost.
//
// Restore creates the file again next to the original under a name of
// its own (a directory at its own path if that is free), making the
// directories above it that are gone too, opens every open file of it,
// and removes it and them.
// A mapped unlinked file is made by amber itself instead, before any task
// runs, and removed once all are restored (ghost_map.go).

// DefaultGhostLimit is the largest unlinked file a dump keeps unless the
// user says otherwise (--ghost-limit), as with criu.
const DefaultGhostLimit = 1 << 20

// ghostChunksFrom is the size from which a ghost's contents are stored
// as chunks (CRIU's GHOST_CHUNKS_THRESH).
const ghostChunksFrom = 3 * 4096

// ghostChunkMax bounds one chunk of a ghost image.
const ghostChunkMax = 1 << 20

// remapFpathName is the image mapping files to their ghosts.
const remapFpathName = "remap-fpath.img"

func ghostFileName(id uint32) string { return fmt.Sprintf("ghost-file-%d.img", id) }

// ghostState is what a dump keeps of unlinked files.
type ghostState struct {
	ids    map[fileKey]uint32 // ghost id by file identity
	maps   map[mapKey]uint32  // file id of each mapped ghost (GhostMapping)
	srcs   []ghostSource      // one per ghost, in id order
	remaps []*remap.RemapFilePathEntry
	links  map[fileKey]uint32 // file id of the link made for each linked-back file (linkremap.go)
	made   []string           // the links the dump made, paths of the tree, for RemoveLinks
	// deadFiles are the files under /proc/PID of processes gone, by file
	// id, and deadPids those PIDs, each with its remap (deadproc.go).
	deadFiles map[uint32]bool
	deadPids  map[int]bool
}

// ghostSource is where a dump reads a ghost's contents from.
type ghostSource struct {
	id   uint32
	proc string // the file's /proc link: /proc/PID/fd/FD, /proc/PID/cwd
	path string
	st   *syscall.Stat_t
}

// addGhost records the unlinked file behind pid's fd (link is its /proc
// link) as a regular file mapped to a ghost.
func (d *Dumper) addGhost(pid, fd int, link string, info proc.FdInfo, st os.FileInfo, flags uint32) (uint32, error) {
	return d.addGhostAt(fmt.Sprintf("/proc/%d/fd/%d", pid, fd), link, uint64(info.Pos), st, flags)
}

// addGhostAt records the unlinked file that /proc link at names (link is
// what it reads): a regular file, or a directory removed while open or
// some task's working directory.
func (d *Dumper) addGhostAt(at, link string, pos uint64, st os.FileInfo, flags uint32) (uint32, error) {
	name := strings.TrimSuffix(link, " (deleted)")
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || !ghostKind(st.Mode()) {
		return 0, fmt.Errorf("%s: an unlinked %s is not supported yet", link, kindOf(st.Mode()))
	}
	if sys.Nlink > 0 {
		return d.addLinked(at, link, pos, st, flags)
	}
	if size := sys.Blocks * 512; st.Mode().IsRegular() && size > d.opts.GhostLimit {
		return 0, fmt.Errorf("%s: unlinked file of %d bytes on disk, above the ghost limit of %d bytes: raise it with --ghost-limit",
			link, size, d.opts.GhostLimit)
	}
	g := d.ghostState()
	id := d.Table.addReg(name, flags, pos, st)
	gid, ok := g.ids[keyOf(st)]
	if !ok {
		gid = uint32(len(g.srcs)) + 1
		g.ids[keyOf(st)] = gid
		g.srcs = append(g.srcs, ghostSource{id: gid, proc: at, path: name, st: d.inward(sys)})
	}
	g.remaps = append(g.remaps, &remap.RemapFilePathEntry{
		OrigId: proto.Uint32(id), RemapId: proto.Uint32(gid), RemapType: remap.RemapType_GHOST.Enum(),
	})
	return id, nil
}

// ghostKind tells the kinds of unlinked files a dump keeps: all but
// sockets (their own kind of file) and block devices (refused linked too).
func ghostKind(m os.FileMode) bool {
	return m.IsRegular() || m.IsDir() || m&(os.ModeSymlink|os.ModeNamedPipe|os.ModeCharDevice) != 0
}

// kindOf names the type of a file, for errors.
func kindOf(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&os.ModeNamedPipe != 0:
		return "FIFO"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeSymlink != 0:
		return "symbolic link"
	case m&os.ModeDevice != 0:
		return "device"
	}
	return "regular file"
}

// addLinked records a file whose /proc link ends in " (deleted)" but
// that still has a name: the path itself, if that is the file (its name
// ends so), else it lives on under another hard link, which amber does
// not look for: with --link-remap the dump links it back (linkremap.go).
func (d *Dumper) addLinked(at, link string, pos uint64, st os.FileInfo, flags uint32) (uint32, error) {
	if now, err := d.Table.stat(link); err == nil && sameFile(now, st) {
		return d.Table.addReg(link, flags, pos, st), nil
	}
	name := strings.TrimSuffix(link, " (deleted)")
	if pid := d.deadProcPid(at, name); pid != 0 {
		return d.addDeadProc(pid, name, pos, st, flags), nil
	}
	if onProcfs(nil, at) {
		return 0, fmt.Errorf("%s: a file of procfs removed but still there: not supported", link)
	}
	if !d.opts.LinkRemap {
		return 0, fmt.Errorf("%s: removed from this path but still linked elsewhere: dump with --link-remap", link)
	}
	return d.addLinkRemap(at, name, pos, st, flags)
}

// isGhost reports whether file id is an unlinked file.
func (g *ghostState) isGhost(id uint32) bool {
	if g == nil {
		return false
	}
	return slices.ContainsFunc(g.remaps, func(r *remap.RemapFilePathEntry) bool { return r.GetOrigId() == id })
}

// write writes remap-fpath.img and a ghost-file image per ghost.
func (g *ghostState) write(dir image.Dir) error {
	if g == nil {
		return nil
	}
	for _, src := range g.srcs {
		if err := writeGhost(dir, src); err != nil {
			return fmt.Errorf("unlinked file %s (%s): %w", src.path, src.proc, err)
		}
	}
	msgs := make([]proto.Message, len(g.remaps))
	for i, r := range g.remaps {
		msgs[i] = r
	}
	return image.WriteFile(dir.File(remapFpathName), image.RemapFpath, msgs...)
}

// writeGhost writes the ghost image of one unlinked file: its entry
// and, for a regular file, its contents, read through /proc (its process
// may hold it write-only).
func writeGhost(dir image.Dir, src ghostSource) error {
	st := src.st
	e := &ghostfile.GhostFileEntry{
		Uid: proto.Uint32(st.Uid), Gid: proto.Uint32(st.Gid), Mode: proto.Uint32(st.Mode),
		Dev: proto.Uint32(uint32(st.Dev)), Ino: proto.Uint64(st.Ino),
		Atim: &timeimg.Timeval{TvSec: proto.Uint64(uint64(st.Atim.Sec)), TvUsec: proto.Uint64(uint64(st.Atim.Nsec / 1000))},
		Mtim: &timeimg.Timeval{TvSec: proto.Uint64(uint64(st.Mtim.Sec)), TvUsec: proto.Uint64(uint64(st.Mtim.Nsec / 1000))},
	}
	if t := st.Mode & unix.S_IFMT; t == unix.S_IFCHR || t == unix.S_IFBLK {
		e.Rdev = proto.Uint32(uint32(st.Rdev))
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		target, err := symlinkTarget(src.proc)
		if err != nil {
			return err
		}
		e.SymlnkTarget = proto.String(target)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return image.WriteFile(dir.File(ghostFileName(src.id)), image.GhostFile, e)
	}
	f, err := os.Open(src.proc)
	if err != nil {
		return err
	}
	defer f.Close()
	chunks := st.Size >= ghostChunksFrom
	if chunks {
		e.Chunks, e.Size = proto.Bool(true), proto.Uint64(uint64(st.Size))
	}
	w, err := image.Create(dir.File(ghostFileName(src.id)), image.GhostFile)
	if err != nil {
		return err
	}
	if chunks {
		err = w.Write(e)
		if err == nil {
			err = writeChunks(w, f, st.Size)
		}
	} else {
		err = writeWhole(w, e, f, st.Size)
	}
	if err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// symlinkTarget reads the symbolic link that /proc link at names (a
// descriptor opened O_PATH|O_NOFOLLOW on it): opening the /proc link
// O_PATH lands on the link itself, whose target readlinkat then reads.
func symlinkTarget(at string) (string, error) {
	fd, err := unix.Open(at, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", at, err)
	}
	defer unix.Close(fd)
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", fmt.Errorf("read the symbolic link: %w", err)
	}
	if n == len(buf) {
		return "", fmt.Errorf("read the symbolic link: target longer than %d bytes", len(buf))
	}
	return string(buf[:n]), nil
}

// writeWhole writes the entry of a small file, then its bytes raw.
func writeWhole(w *image.Writer, e *ghostfile.GhostFileEntry, f *os.File, size int64) error {
	data := make([]byte, size)
	n, err := f.ReadAt(data, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return w.WriteWithPayload(e, data[:n])
}

// writeChunks appends the data areas of a file (SEEK_DATA, SEEK_HOLE) as
// chunks of at most ghostChunkMax bytes.
func writeChunks(w *image.Writer, f *os.File, size int64) error {
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			return fmt.Errorf("SEEK_DATA: %w", err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("SEEK_HOLE: %w", err)
		}
		hole = min(hole, size)
		for o := data; o < hole; o += ghostChunkMax {
			buf := make([]byte, min(ghostChunkMax, hole-o))
			if _, err := f.ReadAt(buf, o); err != nil {
				return err
			}
			c := &ghostfile.GhostChunkEntry{Len: proto.Uint64(uint64(len(buf))), Off: proto.Uint64(uint64(o))}
			if err := w.WriteWithPayload(c, buf); err != nil {
				return err
			}
		}
		off = hole
	}
	return nil
}

// Ghost is an unlinked file as the images keep it.
type Ghost struct {
	ID     uint32
	Entry  *ghostfile.GhostFileEntry
	Size   uint64       // the file's size
	Chunks []GhostChunk // its data, holes left out
}

// GhostChunk is data of a ghost at an offset.
type GhostChunk struct {
	Off  uint64
	Data []byte
}

// readGhosts reads remap-fpath.img and the ghosts it names, if there are
// any, into x: the ghost of each regular file by file id, the link of
// each linked-back file (linkremap.go) by file id, and the dead PIDs
// (deadproc.go).
func readGhosts(dir image.Dir, x *Extra) error {
	out := map[uint32]*Ghost{}
	links := map[uint32]uint32{}
	dead := map[int]bool{}
	byID := map[uint32]*Ghost{}
	err := image.EachEntry(dir.File(remapFpathName), image.RemapFpath, func(r *image.Reader) error {
		var e remap.RemapFilePathEntry
		if err := r.Next(&e); err != nil {
			return err
		}
		switch t := e.GetRemapType(); t {
		case remap.RemapType_LINKED:
			links[e.GetOrigId()] = e.GetRemapId()
			return nil
		case remap.RemapType_PROCFS:
			if pid := e.GetRemapId(); pid == 0 || pid > 1<<22 {
				return fmt.Errorf("file id %d: remap of a dead process with pid %d", e.GetOrigId(), pid)
			}
			dead[int(e.GetRemapId())] = true
			return nil
		case remap.RemapType_GHOST:
		default:
			return fmt.Errorf("file id %d: remap of type %v: not supported yet", e.GetOrigId(), t)
		}
		g, ok := byID[e.GetRemapId()]
		if !ok {
			var err error
			if g, err = readGhost(dir, e.GetRemapId()); err != nil {
				return err
			}
			byID[g.ID] = g
		}
		out[e.GetOrigId()] = g
		return nil
	})
	x.Ghosts, x.Links, x.deadPids = out, links, dead
	return err
}

// readGhost reads ghost-file-ID.img.
func readGhost(dir image.Dir, id uint32) (*Ghost, error) {
	path := dir.File(ghostFileName(id))
	f, err := path.OpenContents()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p := path.String()
	r, err := image.NewReader(f, p, image.GhostFile)
	if err != nil {
		return nil, err
	}
	g := &Ghost{ID: id, Entry: &ghostfile.GhostFileEntry{}}
	if err := r.Next(g.Entry); err != nil {
		return nil, noEntry(err, p)
	}
	switch m := g.Entry.GetMode(); m & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR, unix.S_IFIFO:
		return g, nil
	case unix.S_IFCHR:
		if g.Entry.Rdev == nil {
			return nil, fmt.Errorf("%s: a device without rdev", p)
		}
		return g, nil
	case unix.S_IFLNK:
		if g.Entry.SymlnkTarget == nil {
			return nil, fmt.Errorf("%s: a symbolic link without symlnk_target", p)
		}
		return g, nil
	default:
		return nil, fmt.Errorf("%s: a ghost of mode %#o: only regular files, directories, symbolic links, FIFOs and character devices are supported", p, m)
	}
	if !g.Entry.GetChunks() {
		data, err := r.Rest()
		g.Size, g.Chunks = uint64(len(data)), []GhostChunk{{Off: 0, Data: data}}
		return g, err
	}
	g.Size = g.Entry.GetSize()
	for {
		var c ghostfile.GhostChunkEntry
		data, err := r.NextWithPayload(&c, func() int { return int(c.GetLen()) })
		if err == io.EOF {
			return g, nil
		}
		if err != nil {
			return nil, err
		}
		if c.GetOff()+c.GetLen() > g.Size {
			return nil, fmt.Errorf("%s: chunk at %d of %d bytes beyond the size %d", p, c.GetOff(), c.GetLen(), g.Size)
		}
		g.Chunks = append(g.Chunks, GhostChunk{Off: c.GetOff(), Data: data})
	}
}

func noEntry(err error, p string) error {
	if err == io.EOF {
		return fmt.Errorf("%s: no ghost_file_entry", p)
	}
	return err
}

// ghostPath is where restore creates a ghost again: next to the path it
// had, under a name of its own (CRIU's is PATH.cr.ID.ghost).
func ghostPath(orig string, id uint32) string { return fmt.Sprintf("%s.amber.%x.ghost", orig, id) }

// ghostOf is the ghost that file id is, if any.
func (x *Extra) ghostOf(id uint32) *Ghost {
	if x == nil {
		return nil
	}
	return x.Ghosts[id]
}

// isSymlink tells a ghost symbolic link.
func (g *Ghost) isSymlink() bool { return g.Entry.GetMode()&unix.S_IFMT == unix.S_IFLNK }

// isDir tells a ghost directory.
func (g *Ghost) isDir() bool { return g.Entry.GetMode()&unix.S_IFMT == unix.S_IFDIR }

// ghostFiles lists the regular files of the images that are g, by id.
func (p *fdPlanner) ghostFiles(g *Ghost) []*fdinfo.FileEntry {
	var out []*fdinfo.FileEntry
	for id, o := range p.in.extra().Ghosts {
		if o == g && p.in.Files[id].GetReg() != nil {
			out = append(out, p.in.Files[id])
		}
	}
	slices.SortFunc(out, func(a, b *fdinfo.FileEntry) int { return int(a.GetId()) - int(b.GetId()) })
	return out
}

// makeGhost creates the unlinked file of e again, opens every file of
// the images that is it (parking the others), removes it and returns
// e's descriptor. A ghost amber made itself (a mapped one) is only
// opened.
func (p *fdPlanner) makeGhost(e *fdinfo.FileEntry, g *Ghost) (int, error) {
	if at, ok := p.in.HostGhosts[g.ID]; ok {
		return p.openHostGhost(e, at), nil
	}
	orig := e.GetReg().GetName()
	at, made, err := planGhostNode(p.b, p.in.Stat, orig, g)
	if err != nil {
		return 0, fmt.Errorf("unlinked file %s (file id %d): %w", orig, e.GetId(), err)
	}
	mine := -1
	for _, o := range p.ghostFiles(g) {
		fd := p.b.Open(fmt.Sprintf("unlinked file id %d", o.GetId()), at, openFlags(o.GetReg()), 0)
		if pos := o.GetReg().GetPos(); pos != 0 {
			p.b.Call(fmt.Sprintf("seek unlinked %s to %d", orig, pos), unix.SYS_LSEEK, uint64(fd), pos, unix.SEEK_SET)
		}
		if o.GetId() == e.GetId() {
			mine = fd
			continue
		}
		p.park(o.GetId(), p.b.MoveAbove(fd, p.safe))
	}
	planRemoveGhost(p.b, at, g, made)
	return mine, nil
}

// planGhostNode plans creating ghost g, unlinked from orig, again: a
// directory at orig itself if that is free (as CRIU does: the name shows
// in /proc), anything else at ghostPath. Directories above it that are
// gone too are made first; it returns where the ghost is and the
// directories made for it, outermost first.
func planGhostNode(b *plan.Builder, stat func(string) (os.FileInfo, error), orig string, g *Ghost) (string, []string, error) {
	at := ghostPath(orig, g.ID)
	if _, err := stat(orig); g.isDir() && err != nil {
		at = orig
	} else if _, err := stat(at); err == nil {
		return "", nil, fmt.Errorf("%s exists, left by an earlier restore? Remove it", at)
	}
	made, err := missingDirs(stat, path.Dir(at))
	if err != nil {
		return "", nil, err
	}
	for _, d := range made {
		b.Call("make the removed directory "+d, unix.SYS_MKDIRAT, plan.AtFdcwd, b.String(d), 0o700)
	}
	mode := uint64(g.Entry.GetMode() & 0o7777)
	switch g.Entry.GetMode() & unix.S_IFMT {
	case unix.S_IFDIR:
		b.Call("make the removed directory "+at, unix.SYS_MKDIRAT, plan.AtFdcwd, b.String(at), mode)
	case unix.S_IFIFO, unix.S_IFCHR:
		b.Call(fmt.Sprintf("make the removed node %s (mode %#o)", at, g.Entry.GetMode()), unix.SYS_MKNODAT, plan.AtFdcwd,
			b.String(at), uint64(g.Entry.GetMode()), uint64(g.Entry.GetRdev()))
	case unix.S_IFLNK:
		target := g.Entry.GetSymlnkTarget()
		b.Call(fmt.Sprintf("make the removed symbolic link %s to %s", at, target), unix.SYS_SYMLINKAT,
			b.String(target), plan.AtFdcwd, b.String(at))
	default:
		fillGhost(b, at, g)
		return at, made, nil
	}
	b.Privileged("chown "+at, unix.SYS_FCHOWNAT, plan.AtFdcwd, b.String(at), uint64(g.Entry.GetUid()), uint64(g.Entry.GetGid()), unix.AT_SYMLINK_NOFOLLOW)
	if !g.isSymlink() { // a symbolic link's mode is always 0777
		b.Call("chmod "+at, unix.SYS_FCHMODAT, plan.AtFdcwd, b.String(at), mode)
	}
	return at, made, nil
}

// missingDirs lists dir and those above it that do not exist, outermost
// first; a path on the way that is not a directory is an error.
func missingDirs(stat func(string) (os.FileInfo, error), dir string) ([]string, error) {
	var out []string
	for d := dir; ; d = path.Dir(d) {
		st, err := stat(d)
		if err == nil {
			if !st.IsDir() {
				return nil, fmt.Errorf("%s is no longer a directory", d)
			}
			slices.Reverse(out)
			return out, nil
		}
		if !errors.Is(err, os.ErrNotExist) || d == "/" || d == "." {
			return nil, fmt.Errorf("its directory %s: %w", d, err)
		}
		out = append(out, d)
	}
}

// planRemoveGhost plans setting ghost g's times, removing it from at and
// removing the directories made for it; they are the plan's temporaries
// (amber removes them if the restore fails before the task does).
func planRemoveGhost(b *plan.Builder, at string, g *Ghost, made []string) {
	for _, d := range made {
		b.Temporary(d)
	}
	b.Temporary(at)
	ghostTimes(b, at, g)
	var flag uint64
	if g.isDir() {
		flag = unix.AT_REMOVEDIR
	}
	b.Call("unlink "+at, unix.SYS_UNLINKAT, plan.AtFdcwd, b.String(at), flag)
	for _, d := range slices.Backward(made) {
		b.Call("remove the made directory "+d, unix.SYS_UNLINKAT, plan.AtFdcwd, b.String(d), unix.AT_REMOVEDIR)
	}
}

// fillGhost plans creating the ghost at tmp with its contents, owner and
// mode.
func fillGhost(b *plan.Builder, tmp string, g *Ghost) {
	mode := uint32(g.Entry.GetMode() & 0o7777)
	w := b.Open("a ghost", tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, mode)
	b.Call(fmt.Sprintf("size %s to %d", tmp, g.Size), unix.SYS_FTRUNCATE, uint64(w), g.Size)
	for _, c := range g.Chunks {
		if len(c.Data) > 0 {
			b.Call(fmt.Sprintf("write %d bytes at %d into %s", len(c.Data), c.Off, tmp), unix.SYS_PWRITE64,
				uint64(w), b.Bytes(c.Data), uint64(len(c.Data)), c.Off)
		}
	}
	b.Privileged("chown "+tmp, unix.SYS_FCHOWN, uint64(w), uint64(g.Entry.GetUid()), uint64(g.Entry.GetGid()))
	b.Call("chmod "+tmp, unix.SYS_FCHMOD, uint64(w), uint64(mode))
	b.Close(w)
}

// ghostTimes plans setting the ghost's access and modification times.
func ghostTimes(b *plan.Builder, tmp string, g *Ghost) {
	at, mt := g.Entry.GetAtim(), g.Entry.GetMtim()
	if at == nil || mt == nil {
		return
	}
	var ts []byte
	for _, t := range []*timeimg.Timeval{at, mt} {
		ts = binary.LittleEndian.AppendUint64(ts, t.GetTvSec())
		ts = binary.LittleEndian.AppendUint64(ts, t.GetTvUsec()*1000)
	}
	b.Call("set the times of "+tmp, unix.SYS_UTIMENSAT, plan.AtFdcwd, b.String(tmp), b.Bytes(ts), unix.AT_SYMLINK_NOFOLLOW)
}
