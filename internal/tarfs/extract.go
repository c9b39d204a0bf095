package tarfs

// Unpacking a tree.

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// pageSize is the unit of the holes Extract leaves: a run of zeros that
// fills a whole page is not written.
const pageSize = 4096

// extractor is one archive being unpacked.
type extractor struct {
	root int // the directory unpacked into
	// The parent directory of the last entry, kept open for the next:
	// the entries of one directory come together.
	parent   string
	parentFd int
	dirs     []*tar.Header // their modes, owners and times are set last
	buf      []byte        // made at the first file with data
}

// Extract unpacks the tar stream r into the directory open at root, as
// GNU tar --extract run by root does: owners, modes and times as the
// archive says, an existing file of an entry's name replaced, missing
// parent directories made, the metadata of directories set once all
// their entries are in. Names resolve inside root: neither "..", nor
// an absolute name, nor a symbolic link unpacked before leads outside.
// Runs of zeros of a page or more become holes. ids turns the archive's
// owners into the system's.
func Extract(r io.Reader, root *os.File, ids IDs) error {
	x := &extractor{root: int(root.Fd()), parentFd: -1}
	defer x.closeParent()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read the archive: %w", err)
		}
		uid, gid := uint32(h.Uid), uint32(h.Gid)
		if err := ids.apply(&uid, &gid); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		h.Uid, h.Gid = int(uid), int(gid)
		if err := x.entry(tr, h); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
	}
	return x.finishDirs()
}

// entry unpacks one entry, whose data tr reads.
func (x *extractor) entry(tr *tar.Reader, h *tar.Header) error {
	name := path.Clean("/" + h.Name)
	if h.Typeflag == tar.TypeDir {
		h.Name = name
		x.dirs = append(x.dirs, h)
		if name == "/" {
			return nil
		}
	}
	switch h.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil // records for entries to come, applied by tar.Reader
	case tar.TypeDir, tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont, tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return fmt.Errorf("entry of type %q cannot be unpacked", h.Typeflag)
	}
	if name == "/" {
		return errors.New("a file where the root directory is")
	}
	pfd, err := x.openParent(path.Dir(name))
	if err != nil {
		return err
	}
	base := path.Base(name)
	if h.Typeflag == tar.TypeDir {
		return mkdir(pfd, base)
	}
	if err := x.create(pfd, base, tr, h); !errors.Is(err, unix.EEXIST) {
		return err
	}
	// tar replaces a file of the same name (an archive may hold a name
	// twice); a directory stays, and the entry fails.
	if err := unix.Unlinkat(pfd, base, 0); err != nil {
		return fmt.Errorf("replace the file there: %w", err)
	}
	return x.create(pfd, base, tr, h)
}

// mkdir makes the directory base in pfd, unless one is there. Its mode
// is set at the end.
func mkdir(pfd int, base string) error {
	err := unix.Mkdirat(pfd, base, 0o700)
	if errors.Is(err, unix.EEXIST) {
		var st unix.Stat_t
		if serr := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); serr == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	return nil
}

// create makes the file of a non-directory entry as base in pfd, or
// fails with EEXIST if a file has its name.
func (x *extractor) create(pfd int, base string, tr *tar.Reader, h *tar.Header) error {
	switch h.Typeflag {
	case tar.TypeLink:
		return x.link(pfd, base, h.Linkname)
	case tar.TypeSymlink:
		if err := unix.Symlinkat(h.Linkname, pfd, base); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
		return setStatAt(pfd, base, h, false)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if err := unix.Mknodat(pfd, base, nodeType(h.Typeflag)|0o600, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
		return setStatAt(pfd, base, h, true)
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	if err := x.fill(fd, tr, h.Size); err != nil {
		return err
	}
	return setStat(fd, h)
}

// nodeType is the file type mknod makes for an entry's type.
func nodeType(typ byte) uint32 {
	switch typ {
	case tar.TypeChar:
		return unix.S_IFCHR
	case tar.TypeBlock:
		return unix.S_IFBLK
	}
	return unix.S_IFIFO
}

// link makes base in pfd another name of target, a name of the archive
// (a symbolic link as itself, not what it points to).
func (x *extractor) link(pfd int, base, target string) error {
	target = path.Clean("/" + target)
	tfd, err := inRoot(x.root, path.Dir(target), unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("hard link to %s: %w", target, err)
	}
	defer unix.Close(tfd)
	if err := unix.Linkat(tfd, path.Base(target), pfd, base, 0); err != nil {
		return fmt.Errorf("hard link to %s: %w", target, err)
	}
	return nil
}

// fill writes size bytes of r into the new file fd, leaving a hole for
// each page of zeros.
func (x *extractor) fill(fd int, r io.Reader, size int64) error {
	if x.buf == nil && size > 0 {
		x.buf = make([]byte, bufSize)
	}
	var off int64
	for off < size {
		n, err := io.ReadFull(r, x.buf[:min(int64(len(x.buf)), size-off)])
		if err != nil {
			return fmt.Errorf("read data at %d: %w", off, err)
		}
		if err := writeNonZero(fd, x.buf[:n], off); err != nil {
			return err
		}
		off += int64(n)
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		return fmt.Errorf("truncate to %d: %w", size, err)
	}
	return nil
}

// zeroPage is a page of zeros, to compare with.
var zeroPage [pageSize]byte

// writeNonZero writes b at off in fd, all but its pages of zeros.
func writeNonZero(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n := 0 // the run of pages with data at the start of b
		for n < len(b) {
			end := min(n+pageSize, len(b))
			if bytes.Equal(b[n:end], zeroPage[:end-n]) {
				break
			}
			n = end
		}
		if n > 0 {
			if _, err := unix.Pwrite(fd, b[:n], off); err != nil {
				return fmt.Errorf("write at %d: %w", off, err)
			}
		}
		for n < len(b) { // and the zeros after it
			end := min(n+pageSize, len(b))
			if !bytes.Equal(b[n:end], zeroPage[:end-n]) {
				break
			}
			n = end
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// openParent opens dir, a directory of the tree, keeping it for the
// next entries; missing directories on the way are made.
func (x *extractor) openParent(dir string) (int, error) {
	if x.parentFd >= 0 && x.parent == dir {
		return x.parentFd, nil
	}
	x.closeParent()
	fd, err := inRoot(x.root, dir, unix.O_PATH|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) {
		fd, err = x.mkdirAll(dir)
	}
	if err != nil {
		return -1, fmt.Errorf("open the directory %s: %w", dir, err)
	}
	x.parent, x.parentFd = dir, fd
	return fd, nil
}

// mkdirAll makes dir and its missing parents, mode 0755 as tar makes
// them, and opens it.
func (x *extractor) mkdirAll(dir string) (int, error) {
	if dir == "/" {
		return inRoot(x.root, dir, unix.O_PATH|unix.O_DIRECTORY)
	}
	pfd, err := inRoot(x.root, path.Dir(dir), unix.O_PATH|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) {
		pfd, err = x.mkdirAll(path.Dir(dir))
	}
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, path.Base(dir), 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	return inRoot(x.root, dir, unix.O_PATH|unix.O_DIRECTORY)
}

func (x *extractor) closeParent() {
	if x.parentFd >= 0 {
		unix.Close(x.parentFd)
		x.parentFd = -1
	}
}

// finishDirs sets the owners, modes and times of the directories, the
// deepest first: setting them made no entry fail, and unpacking an
// entry changed no time set.
func (x *extractor) finishDirs() error {
	for _, h := range slices.Backward(x.dirs) {
		fd, err := inRoot(x.root, h.Name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		err = setStat(fd, h)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
	}
	return nil
}

// setStat sets the owner, the mode (after the owner: chown clears the
// set-id bits) and the times of the file open at fd.
func setStat(fd int, h *tar.Header) error {
	if err := unix.Fchown(fd, h.Uid, h.Gid); err != nil {
		return fmt.Errorf("chown %d:%d: %w", h.Uid, h.Gid, err)
	}
	if err := unix.Fchmod(fd, uint32(h.Mode&0o7777)); err != nil {
		return fmt.Errorf("chmod %#o: %w", h.Mode&0o7777, err)
	}
	if err := unix.UtimesNanoAt(fd, "", times(h), unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// setStatAt sets what setStat does on base in pfd, a symbolic link or
// a node just made; a link has no mode of its own.
func setStatAt(pfd int, base string, h *tar.Header, mode bool) error {
	if err := unix.Fchownat(pfd, base, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %d:%d: %w", h.Uid, h.Gid, err)
	}
	if mode {
		if err := unix.Fchmodat(pfd, base, uint32(h.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("chmod %#o: %w", h.Mode&0o7777, err)
		}
	}
	if err := unix.UtimesNanoAt(pfd, base, times(h), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// times are an entry's access and modification times; an archive
// without the access time leaves it as it is.
func times(h *tar.Header) []unix.Timespec {
	atime := unix.Timespec{Nsec: unix.UTIME_OMIT}
	if !h.AccessTime.IsZero() {
		atime = timespec(h.AccessTime)
	}
	return []unix.Timespec{atime, timespec(h.ModTime)}
}

func timespec(t time.Time) unix.Timespec { return unix.NsecToTimespec(t.UnixNano()) }

// inRoot opens name in the tree whose root is open at root: "..",
// absolute symbolic links and magic links resolve inside it.
func inRoot(root int, name string, flags int) (int, error) {
	return unix.Openat2(root, "."+name, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}
