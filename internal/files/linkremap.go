package files

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	remap "github.com/checkpoint-restore/go-criu/v8/crit/images/remap-file-path"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

// Linked-back files (criu's --link-remap, REMAP_TYPE LINKED): a file
// still open but removed from the path it was opened by, while another
// hard link keeps it alive somewhere the dump does not look. Its contents
// are not copied: the dump makes a new hard link to it, link_remap.ID in
// the directory of the removed path (or the nearest directory above that
// still exists), through the descriptor's /proc link. files.img gets a
// regular-file entry for that link (id ID, the name of the link) beside
// the file's own, and remap-fpath.img maps the file's entry to the
// link's. Every open file of one inode maps to the same link.
//
// Restore links the file from link_remap.ID back to its path (or next to
// it, if that name is taken again), opens every open file of it there,
// and removes that name again, so the files show their path " (deleted)"
// as before; once the whole tree runs it removes link_remap.ID too. A
// failed dump removes the links it made; a failed restore leaves them, so
// that the images can be restored again.

// linkRemapName is the name of the link a dump makes for file id.
func linkRemapName(id uint32) string { return fmt.Sprintf("link_remap.%d", id) }

// addLinkRemap records the file that /proc link at names, removed from
// path but linked elsewhere: a regular-file entry with that path, mapped
// to a link the dump makes to the file.
func (d *Dumper) addLinkRemap(at, name string, pos uint64, st os.FileInfo, flags uint32) (uint32, error) {
	lid, err := d.linkBack(at, name, st)
	if err != nil {
		return 0, fmt.Errorf("%s (deleted): link it back (--link-remap): %w", name, err)
	}
	g := d.ghostState()
	id := d.Table.addReg(name, flags, pos, st)
	g.remaps = append(g.remaps, &remap.RemapFilePathEntry{
		OrigId: proto.Uint32(id), RemapId: proto.Uint32(lid), RemapType: remap.RemapType_LINKED.Enum(),
	})
	return id, nil
}

// linkBack makes the link of the file at (once per inode) and returns
// the file id of its entry.
func (d *Dumper) linkBack(at, name string, st os.FileInfo) (uint32, error) {
	g := d.ghostState()
	if lid, ok := g.links[keyOf(st)]; ok {
		return lid, nil
	}
	lid := d.Table.nextID()
	for dir := path.Dir(name); ; dir = path.Dir(dir) {
		lname := path.Join(dir, linkRemapName(lid))
		made, err := d.linkAt(at, lname, st)
		if errors.Is(err, unix.ENOENT) && dir != "/" && dir != "." {
			continue // the directory is gone too: the one above it
		}
		if err != nil {
			return 0, err
		}
		if made {
			g.made = append(g.made, lname)
		}
		if id := d.Table.addReg(lname, unix.O_RDONLY, 0, st); id != lid {
			return 0, fmt.Errorf("%s: file id %d, expected %d", lname, id, lid)
		}
		g.links[keyOf(st)] = lid
		return lid, nil
	}
}

// linkAt links the file that /proc link at names to lname of the tree.
// A link of that name to the same file, left by an earlier dump of the
// same process that let it run on, is used as it is (made false).
func (d *Dumper) linkAt(at, lname string, st os.FileInfo) (bool, error) {
	err := d.Table.root.Link(at, lname)
	if errors.Is(err, unix.EEXIST) {
		if now, serr := d.Table.root.Lstat(lname); serr == nil && sameFile(now, st) {
			return false, nil
		}
		return false, fmt.Errorf("%s exists and is another file: remove it", lname)
	}
	if err != nil {
		return false, fmt.Errorf("link %s: %w", lname, err)
	}
	return true, nil
}

// RemoveLinks removes the links the dump made (--link-remap), after a
// failed dump: the tree runs on as it was, its filesystem too.
func (d *Dumper) RemoveLinks() error {
	if d.ghosts == nil {
		return nil
	}
	var errs []error
	for _, p := range d.ghosts.made {
		if err := d.Table.root.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove the link made for --link-remap: %w", err))
		}
	}
	d.ghosts.made = nil
	return errors.Join(errs...)
}

// linkedFiles lists the regular files of the images that are linked back
// through link file lid, by id.
func (p *fdPlanner) linkedFiles(lid uint32) []*fdinfo.FileEntry {
	var out []*fdinfo.FileEntry
	for id, l := range p.in.extra().Links {
		if l == lid && p.in.Files[id].GetReg() != nil {
			out = append(out, p.in.Files[id])
		}
	}
	slices.SortFunc(out, func(a, b *fdinfo.FileEntry) int { return int(a.GetId()) - int(b.GetId()) })
	return out
}

// linkedPath is where restore links a file back when its own path is
// taken again: next to it, under a name of its own.
func linkedPath(orig string, lid uint32) string { return fmt.Sprintf("%s.amber.%x.link", orig, lid) }

// makeLinked links the file of e back from link file lid, opens every
// file of the images that is it (parking the others), removes the name
// again and returns e's descriptor.
func (p *fdPlanner) makeLinked(e *fdinfo.FileEntry, lid uint32) (int, error) {
	orig := e.GetReg().GetName()
	l := p.in.Files[lid]
	if l.GetReg() == nil {
		return 0, fmt.Errorf("%s (file id %d): remap-fpath.img links it to file id %d, which is no regular file", orig, e.GetId(), lid)
	}
	if err := p.in.fileCheck().Reg(l); err != nil {
		return 0, fmt.Errorf("%s (file id %d), linked back: %w", orig, e.GetId(), err)
	}
	at := orig
	if _, err := p.in.Stat(orig); err == nil {
		at = linkedPath(orig, lid)
		if _, err := p.in.Stat(at); err == nil {
			return 0, fmt.Errorf("%s exists, left by an earlier restore? Remove it", at)
		}
	}
	made, err := missingDirs(p.in.Stat, path.Dir(at))
	if err != nil {
		return 0, fmt.Errorf("%s (file id %d), linked back: %w", orig, e.GetId(), err)
	}
	b := p.b
	for _, d := range made {
		b.Call("make the removed directory "+d, unix.SYS_MKDIRAT, plan.AtFdcwd, b.String(d), 0o700)
	}
	from := l.GetReg().GetName()
	b.Call(fmt.Sprintf("link %s back to %s", from, at), unix.SYS_LINKAT, plan.AtFdcwd, b.String(from), plan.AtFdcwd, b.String(at), 0)
	mine := -1
	for _, o := range p.linkedFiles(lid) {
		fd := b.Open(fmt.Sprintf("linked-back file id %d", o.GetId()), at, openFlags(o.GetReg()), 0)
		if pos := o.GetReg().GetPos(); pos != 0 {
			b.Call(fmt.Sprintf("seek %s to %d", orig, pos), unix.SYS_LSEEK, uint64(fd), pos, unix.SEEK_SET)
		}
		if o.GetId() == e.GetId() {
			mine = fd
			continue
		}
		p.park(o.GetId(), b.MoveAbove(fd, p.safe))
	}
	b.Call("unlink "+at, unix.SYS_UNLINKAT, plan.AtFdcwd, b.String(at), 0)
	for _, d := range slices.Backward(made) {
		b.Call("remove the made directory "+d, unix.SYS_UNLINKAT, plan.AtFdcwd, b.String(d), unix.AT_REMOVEDIR)
	}
	return mine, nil
}

// LinkRemaps are the links a dump made for linked-back files, by path in
// the tree: restore removes them once the tree runs.
func LinkRemaps(idx Index, x *Extra) []string {
	if x == nil {
		return nil
	}
	var out []string
	for _, lid := range x.Links {
		if e := idx[lid]; e.GetReg() != nil && !slices.Contains(out, e.GetReg().GetName()) {
			out = append(out, e.GetReg().GetName())
		}
	}
	slices.Sort(out)
	return out
}
