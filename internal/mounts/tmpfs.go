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
	"path"
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
	var hidden []int
	err := onThread(pid, nil, func() error {
		for i, e := range entries {
			var err error
			roots[i], err = openVisible(e)
			if errors.Is(err, errHidden) || errors.Is(err, errUnbindable) {
				hidden = append(hidden, i)
			} else if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(hidden) > 0 {
		all := make([]*mnt.MntEntry, len(steps))
		for i, s := range steps {
			all[i] = s.Entry
		}
		for _, i := range hidden {
			if roots[i], err = openHidden(pid, entries[i], all); err != nil {
				return err
			}
		}
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

// errHidden: another mount hides the one opened at its mountpoint.
var errHidden = errors.New("another mount hides it")

// errUnbindable: the mount is unbindable, which open_tree cannot copy.
var errUnbindable = errors.New("unbindable")

// openHidden opens a copy of the mount e of pid's namespace, whose
// mounts are all, when another mount hides it (an overmount: one at its
// mountpoint or above) or it is unbindable. As CRIU does, a private
// copy of the namespace is made, where every mount is private (so
// bindable) and the mounts in the way are unmounted until e is reached:
// the namespace itself is left as it is.
func openHidden(pid int, e *mnt.MntEntry, all []*mnt.MntEntry) (*os.File, error) {
	proc, err := unix.Open("/proc", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(proc)
	chain, err := ancestors(e, all)
	if err != nil {
		return nil, err
	}
	var f *os.File
	err = onThread(pid, nil, func() error {
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			return fmt.Errorf("mount %d at %s: copy the mount namespace: %w", e.GetMntId(), e.GetMountpoint(), err)
		}
		// Nothing unmounted here may propagate to the tree's namespace.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("make the copied mount namespace private: %w", err)
		}
		if err := uncover(proc, e, chain); err != nil {
			return fmt.Errorf("mount %d at %s: %w", e.GetMntId(), e.GetMountpoint(), err)
		}
		f, err = openMountRoot(e.GetMountpoint(), e)
		return err
	})
	return f, err
}

// ancestors lists the mounts from the root of all to e, e included.
func ancestors(e *mnt.MntEntry, all []*mnt.MntEntry) ([]*mnt.MntEntry, error) {
	byID := map[uint32]*mnt.MntEntry{}
	for _, m := range all {
		byID[m.GetMntId()] = m
	}
	chain := []*mnt.MntEntry{e}
	for m := e; ; {
		p, ok := byID[m.GetParentMntId()]
		if !ok || p == m {
			break
		}
		if len(chain) > len(all) {
			return nil, fmt.Errorf("mount %d: its parents form a loop", e.GetMntId())
		}
		chain = append([]*mnt.MntEntry{p}, chain...)
		m = p
	}
	return chain, nil
}

// uncover unmounts, in the calling thread's private mount namespace,
// the mounts in the way to e, the last of chain (its ancestors, from
// the root): along each leading part of e's mountpoint, the mount
// reached must be the closest ancestor of e mounted there, else it is
// one over it, which goes (with the mounts under it). proc is amber's
// /proc, where the thread reads its mounts.
func uncover(proc int, e *mnt.MntEntry, chain []*mnt.MntEntry) error {
	prefixes := []string{"/"}
	for p := e.GetMountpoint(); p != "/" && p != "."; p = path.Dir(p) {
		prefixes = append(prefixes[:1], append([]string{p}, prefixes[1:]...)...)
	}
	for range 1000 {
		infos, err := threadMountinfo(proc)
		if err != nil {
			return err
		}
		over, err := inTheWay(prefixes, chain, infos)
		if err != nil || over == nil {
			return err
		}
		if err := unix.Unmount(over.Mountpoint, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s over it in a copy of the namespace: %w", over.Mountpoint, err)
		}
	}
	return fmt.Errorf("still hidden after a thousand unmounts")
}

// inTheWay finds the first mount reached along prefixes (the leading
// parts of a mountpoint, "/" first) that is not the ancestor of chain
// expected there; nil if there is none.
func inTheWay(prefixes []string, chain []*mnt.MntEntry, infos []Info) (*Info, error) {
	byID := map[uint64]*Info{}
	for i := range infos {
		byID[uint64(infos[i].ID)] = &infos[i]
	}
	var last *Info
	for _, q := range prefixes {
		var st unix.Statx_t
		err := unix.Statx(unix.AT_FDCWD, q, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			// The mount reached before has no such path: it is over.
			if last == nil {
				return nil, fmt.Errorf("%s: %w", q, err)
			}
			return last, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
		m, ok := byID[st.Mnt_id]
		if !ok {
			return nil, fmt.Errorf("%s: mount %d is not in the mountinfo", q, st.Mnt_id)
		}
		var want *mnt.MntEntry
		for _, a := range chain {
			if within(q, a.GetMountpoint()) {
				want = a
			}
		}
		if want == nil || m.Mountpoint != want.GetMountpoint() || m.Root != want.GetRoot() || kdev(m.Major, m.Minor) != want.GetRootDev() {
			return m, nil
		}
		last = m
	}
	return nil, nil
}

// threadMountinfo reads the calling thread's mounts, in amber's /proc
// (proc): the namespace's own /proc does not show amber's threads.
func threadMountinfo(proc int) ([]Info, error) {
	fd, err := unix.Openat(proc, "thread-self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /proc/thread-self/mountinfo: %w", err)
	}
	f := os.NewFile(uintptr(fd), "/proc/thread-self/mountinfo")
	defer f.Close()
	return ParseMountinfo(f, f.Name())
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

// openVisible opens a copy of the mount e of the calling thread's mount
// namespace (openMountRoot), if it is the one its mountpoint reaches;
// else it fails with errHidden.
func openVisible(e *mnt.MntEntry) (*os.File, error) {
	if e.GetFlags()&unix.MS_UNBINDABLE != 0 {
		return nil, fmt.Errorf("mount %d at %s: %w", e.GetMntId(), e.GetMountpoint(), errUnbindable)
	}
	var st unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, e.GetMountpoint(), unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st)
	if err == nil && st.Mnt_id != uint64(e.GetMntId()) {
		err = fmt.Errorf("mount %d is there", st.Mnt_id)
	}
	if err != nil {
		return nil, fmt.Errorf("mount %d at %s: %w (%w)", e.GetMntId(), e.GetMountpoint(), errHidden, err)
	}
	return openMountRoot(e.GetMountpoint(), e)
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
		return nil, fmt.Errorf("mount %d at %s: %w (device %#x there, want %#x)", e.GetMntId(), e.GetMountpoint(), errHidden, dev, e.GetRootDev())
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
