package tarfs

// Archiving a tree.

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// fileID names an inode, to find the other names of a hard link.
type fileID struct{ dev, ino uint64 }

// creator is one archive being written.
type creator struct {
	w     io.Writer // under tw: the raw headers of sparse files go there
	tw    *tar.Writer
	dev   uint64            // the tree's file system: others are left out
	links map[fileID]string // first name of each inode with more than one
	buf   []byte            // made at the first file or link: most trees have few
	ids   IDs               // the owners' ids as the archive holds them
}

// IDs translates the owners of files between the archive and the
// system: for a tree in a user namespace of its own, the archive holds
// them as the namespace sees them (CRIU runs tar inside it), amber as
// its own namespace does. Nil funcs leave ids as they are.
type IDs struct {
	// Uid and Gid turn an id of amber's into one of the archive's
	// (Create) or the reverse (Extract).
	Uid, Gid func(uint32) (uint32, error)
}

// apply translates st's owner in place.
func (ids IDs) apply(uid, gid *uint32) error {
	var err error
	if ids.Uid != nil {
		if *uid, err = ids.Uid(*uid); err != nil {
			return err
		}
	}
	if ids.Gid != nil {
		if *gid, err = ids.Gid(*gid); err != nil {
			return err
		}
	}
	return nil
}

// bufSize is the size of the buffer files are copied through, and
// symbolic links read into (longer than PATH_MAX).
const bufSize = 32 << 10

// buffer is the creator's buffer, made on first use.
func (c *creator) buffer() []byte {
	if c.buf == nil {
		c.buf = make([]byte, bufSize)
	}
	return c.buf
}

// Create writes the tree whose root directory is open at root (any
// descriptor of it, O_PATH too) to w as a tar stream, with the owners
// ids gives. w is not closed.
func Create(w io.Writer, root *os.File, ids IDs) error {
	d, err := reopenDir(int(root.Fd()), ".", root.Name())
	if err != nil {
		return err
	}
	defer d.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &st); err != nil {
		return fmt.Errorf("%s: %w", root.Name(), err)
	}
	if err := ids.apply(&st.Uid, &st.Gid); err != nil {
		return fmt.Errorf("%s: %w", root.Name(), err)
	}
	c := &creator{w: w, tw: tar.NewWriter(w), dev: st.Dev, links: map[fileID]string{}, ids: ids}
	if err := c.dir(d, "./", &st); err != nil {
		return err
	}
	return c.tw.Close()
}

// reopenDir opens the directory name under dirfd for reading, never
// following a symbolic link.
func reopenDir(dirfd int, name, display string) (*os.File, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", display, err)
	}
	return os.NewFile(uintptr(fd), display), nil
}

// dir archives the directory d, named name (with its trailing slash),
// then what it holds, in the order of their names.
func (c *creator) dir(d *os.File, name string, st *unix.Stat_t) error {
	if err := c.tw.WriteHeader(header(name, st, tar.TypeDir)); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", name, err)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := c.entry(d, n, name+n); err != nil {
			return err
		}
	}
	return nil
}

// entry archives base, a name in the directory parent, as name.
func (c *creator) entry(parent *os.File, base, name string) error {
	pfd := int(parent.Fd())
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("stat %s: %w", name, err)
	}
	if st.Dev != c.dev {
		return nil // a mountpoint: tar's --one-file-system
	}
	if err := c.ids.apply(&st.Uid, &st.Gid); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	kind := st.Mode & unix.S_IFMT
	if kind == unix.S_IFDIR {
		d, err := reopenDir(pfd, base, name)
		if err != nil {
			return err
		}
		defer d.Close()
		return c.dir(d, name+"/", &st)
	}
	if kind == unix.S_IFSOCK {
		return nil // tar leaves sockets out: a restore could not bind them
	}
	if done, err := c.hardLink(name, &st); done || err != nil {
		return err
	}
	switch kind {
	case unix.S_IFREG:
		return c.regular(pfd, base, name, &st)
	case unix.S_IFLNK:
		return c.symlink(pfd, base, name, &st)
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		return c.special(name, &st)
	}
	return fmt.Errorf("%s: file type %#o cannot be archived", name, kind)
}

// hardLink writes a link to the first name of st's inode if it had one
// already; done says it did.
func (c *creator) hardLink(name string, st *unix.Stat_t) (done bool, err error) {
	if st.Nlink < 2 {
		return false, nil
	}
	id := fileID{st.Dev, st.Ino}
	first, ok := c.links[id]
	if !ok {
		c.links[id] = name
		return false, nil
	}
	h := header(name, st, tar.TypeLink)
	h.Linkname = first
	if err := c.tw.WriteHeader(h); err != nil {
		return true, fmt.Errorf("%s: %w", name, err)
	}
	return true, nil
}

// symlink archives the symbolic link base of the directory pfd.
func (c *creator) symlink(pfd int, base, name string, st *unix.Stat_t) error {
	n, err := unix.Readlinkat(pfd, base, c.buffer())
	if err != nil {
		return fmt.Errorf("readlink %s: %w", name, err)
	}
	h := header(name, st, tar.TypeSymlink)
	h.Linkname = string(c.buf[:n])
	if err := c.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// special archives a device node or a FIFO.
func (c *creator) special(name string, st *unix.Stat_t) error {
	h := header(name, st, tar.TypeFifo)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		h.Typeflag = tar.TypeChar
	case unix.S_IFBLK:
		h.Typeflag = tar.TypeBlock
	}
	if h.Typeflag != tar.TypeFifo {
		h.Devmajor, h.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	}
	if err := c.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// regular archives the regular file base of the directory pfd: its
// data, or, with holes, the parts of it that hold data.
func (c *creator) regular(pfd int, base, name string, st *unix.Stat_t) error {
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	frags, err := dataFragments(fd, st)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if frags != nil {
		return c.sparse(f, name, st, frags)
	}
	return c.whole(f, name, st)
}

// whole archives the regular file f with all its bytes.
func (c *creator) whole(f *os.File, name string, st *unix.Stat_t) error {
	h := header(name, st, tar.TypeReg)
	h.Size = st.Size
	if err := c.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := c.copy(f, 0, st.Size); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// copy writes n bytes of f from off into the current entry. A file
// that shrank since it was stat'ed fails: its entry would be short.
func (c *creator) copy(f *os.File, off, n int64) error {
	got, err := io.CopyBuffer(c.tw, io.NewSectionReader(f, off, n), c.buffer())
	if err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("%d bytes at %d, read %d: the file shrank while archived", n, off, got)
	}
	return nil
}

// header is the tar header of the file st names, of type typ: numeric
// owners, permission bits with the set-id and sticky bits, times to the
// nanosecond.
func header(name string, st *unix.Stat_t, typ byte) *tar.Header {
	return &tar.Header{
		Typeflag:   typ,
		Name:       name,
		Mode:       int64(st.Mode & 0o7777),
		Uid:        int(st.Uid),
		Gid:        int(st.Gid),
		ModTime:    time.Unix(st.Mtim.Unix()),
		AccessTime: time.Unix(st.Atim.Unix()),
		ChangeTime: time.Unix(st.Ctim.Unix()),
		Format:     tar.FormatPAX,
	}
}
