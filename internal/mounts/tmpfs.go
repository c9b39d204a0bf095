package mounts

// The contents of tmpfs mounts, as gzipped tars (CRIU's
// tmpfs-dev-DEV.tar.gz.img), written and unpacked in-process by tarfs.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
	"golang.org/x/sys/unix"

	"amber/internal/idmap"
	"amber/internal/image"
	"amber/internal/tarfs"
)

// dumpTmpfses writes the contents of the tmpfs mounts among steps,
// mounts of pid's namespace, into their images, all at once.
func dumpTmpfses(dir image.Dir, pid int, steps []Step, ids tarfs.IDs) error {
	var entries []*mnt.MntEntry
	for _, s := range steps {
		if s.Tmpfs {
			entries = append(entries, s.Entry)
		}
	}
	roots := make([]*os.File, len(entries))
	defer func() {
		for _, r := range roots {
			if r != nil {
				r.Close()
			}
		}
	}()
	// One thread enters the namespace; the copies it opens are read from
	// anywhere.
	err := onThread(pid, nil, func() error {
		for i, e := range entries {
			var err error
			if roots[i], err = openMountRoot(e.GetMountpoint(), e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return archiveAll(dir, roots, entries, ids)
}

// innerIDs turns amber's ids into those of a user namespace's maps, as
// the images hold them (CRIU runs tar inside the namespace); an id it
// does not map is its overflow id, as the tree sees it.
func innerIDs(users *idmap.Pair) tarfs.IDs {
	if users == nil {
		return tarfs.IDs{}
	}
	return tarfs.IDs{
		Uid: func(id uint32) (uint32, error) { return users.InnerUid(id), nil },
		Gid: func(id uint32) (uint32, error) { return users.InnerGid(id), nil },
	}
}

// outerIDs turns the ids of a user namespace's maps back into amber's.
func outerIDs(users *idmap.Pair) tarfs.IDs {
	if users == nil {
		return tarfs.IDs{}
	}
	return tarfs.IDs{Uid: users.OuterUid, Gid: users.OuterGid}
}

// archiveAll writes the images of the tmpfs mounts entries, whose roots
// are open at roots, on as many goroutines as Go runs at once, each
// with one compressor for all its mounts: a compressor's tables cost
// more than archiving a container's /dev.
func archiveAll(dir image.Dir, roots []*os.File, entries []*mnt.MntEntry, ids tarfs.IDs) error {
	next := make(chan int, len(entries))
	for i := range entries {
		next <- i
	}
	close(next)
	errs := make([]error, len(entries))
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(entries)) {
		wg.Go(func() {
			a := archiver{ids: ids}
			for i := range next {
				errs[i] = a.dump(dir, roots[i], entries[i])
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// archiver writes tmpfs images one after the other, with one gzip
// compressor and one buffer.
type archiver struct {
	out bytes.Buffer
	zw  *gzip.Writer
	ids tarfs.IDs
}

// dump writes the tree under root, the root of the tmpfs e, into
// tmpfs-dev-DEV.tar.gz.img. Even an empty tmpfs has its image, with
// its root directory: CRIU's restore fails without one.
func (a *archiver) dump(dir image.Dir, root *os.File, e *mnt.MntEntry) error {
	a.out.Reset()
	if a.zw == nil {
		// The fastest level: a tmpfs holds little, and the time is the
		// container's down time.
		zw, err := gzip.NewWriterLevel(&a.out, gzip.BestSpeed)
		if err != nil {
			return err
		}
		a.zw = zw
	} else {
		a.zw.Reset(&a.out)
	}
	if err := tarfs.Create(a.zw, root, a.ids); err != nil {
		return fmt.Errorf("tmpfs at %s: %w", e.GetMountpoint(), err)
	}
	if err := a.zw.Close(); err != nil {
		return fmt.Errorf("tmpfs at %s: %w", e.GetMountpoint(), err)
	}
	return dir.TmpfsPath(e.GetRootDev()).WriteFile(a.out.Bytes())
}

// openMountRoot opens a copy of the mount e at at, without the mounts
// under it (open_tree's clone, not recursive): the archive then holds
// the files that mounts of the namespace hide. at must be the root of
// e, not something mounted over it. The caller is in e's mount
// namespace: a mount of another cannot be cloned.
func openMountRoot(at string, e *mnt.MntEntry) (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, at, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("mount %d at %s: %w", e.GetMntId(), e.GetMountpoint(), err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mount %d at %s: %w", e.GetMntId(), e.GetMountpoint(), err)
	}
	if dev := kdev(unix.Major(st.Dev), unix.Minor(st.Dev)); dev != e.GetRootDev() {
		unix.Close(fd)
		return nil, fmt.Errorf("mount %d at %s: another mount hides it (device %#x there, want %#x)", e.GetMntId(), e.GetMountpoint(), dev, e.GetRootDev())
	}
	return os.NewFile(uintptr(fd), at), nil
}

// restoreTmpfs unpacks tmpfs-dev-DEV.tar.gz.img into d, the root of a
// new tmpfs, if the images have it (a tmpfs CRIU found empty may have
// none).
func restoreTmpfs(dir image.Dir, d *os.File, e *mnt.MntEntry, ids tarfs.IDs) error {
	p := dir.TmpfsPath(e.GetRootDev())
	f, err := p.Open()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 64<<10))
	if err != nil {
		return fmt.Errorf("%s into tmpfs at %s: %w", p, e.GetMountpoint(), err)
	}
	if err := tarfs.Extract(zr, d, ids); err != nil {
		return fmt.Errorf("%s into tmpfs at %s: %w", p, e.GetMountpoint(), err)
	}
	// To the end of the stream, where gzip checks its checksum.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return fmt.Errorf("%s into tmpfs at %s: %w", p, e.GetMountpoint(), err)
	}
	return nil
}
