// Package fsroot looks up the paths of a process tree as the tree sees
// them. The images hold every path relative to the root of the tree's
// mount namespace, as CRIU's do. A tree that shares amber's mount
// namespace and root sees what amber sees; one in a mount namespace of
// its own, with a root of its own (a container, pivot_root'ed), names
// its files on its own mounts, which amber reaches only through a
// descriptor of the tree's root. Every lookup then goes through openat2
// with RESOLVE_IN_ROOT on that descriptor, so that ".." and absolute
// symbolic links stay in the tree's root too, as they do for the tree:
// a path glued under /proc/PID/root would follow an absolute link in
// amber's root instead.
//
// The dump takes the root of the tree's first task, the restore that of
// the restored root once the tree's mounts are made. A nil *Root is
// amber's own root: its methods are then the plain system calls.
package fsroot

import (
	"errors"
	"fmt"
	"os"
	"path"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Root is a tree's root directory, open (O_PATH).
type Root struct {
	fd  int
	pid int // the task whose root it is, for its mountinfo
}

// Of opens the root of task pid, as its mount namespace shows it.
func Of(pid int) (*Root, error) {
	r, err := Dir(fmt.Sprintf("/proc/%d/root", pid))
	if err != nil {
		return nil, fmt.Errorf("open the root of pid %d: %w", pid, err)
	}
	r.pid = pid
	return r, nil
}

// Dir opens directory dir as a tree's root (a tree chroot'ed there).
// Its Mountinfo is amber's.
func Dir(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &Root{fd: fd}, nil
}

// Close closes the root's descriptor; nil is amber's root, never closed.
func (r *Root) Close() error {
	if r == nil || r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// String names the root in messages.
func (r *Root) String() string {
	if r == nil {
		return "amber's root"
	}
	if r.pid == 0 {
		return fmt.Sprintf("root fd %d", r.fd)
	}
	return fmt.Sprintf("the root of pid %d", r.pid)
}

// Mountinfo is the mountinfo file whose mount points are paths of this
// root: the tree's task's, or amber's own.
func (r *Root) Mountinfo() string {
	if r == nil || r.pid == 0 {
		return "/proc/self/mountinfo"
	}
	return fmt.Sprintf("/proc/%d/mountinfo", r.pid)
}

// Open opens p, a path of the tree, with flags (O_CLOEXEC added) and
// mode. Magic links (/proc/self/...) are refused in a tree's root:
// they would name amber's files, not the tree's.
func (r *Root) Open(p string, flags int, mode uint32) (int, error) {
	flags |= unix.O_CLOEXEC
	if r == nil {
		return retry(flags, func() (int, error) { return unix.Open(p, flags, mode) })
	}
	how := &unix.OpenHow{Flags: uint64(flags), Mode: uint64(mode), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	return retry(flags, func() (int, error) { return unix.Openat2(r.fd, p, how) })
}

// retry runs open again while it is interrupted, or (openat2) while a
// rename raced its lookup (EAGAIN). With O_NONBLOCK, EAGAIN is the
// open's own answer (a lease to break): it is returned, never retried.
func retry(flags int, open func() (int, error)) (int, error) {
	for {
		fd, err := open()
		if errors.Is(err, unix.EINTR) || (errors.Is(err, unix.EAGAIN) && flags&unix.O_NONBLOCK == 0) {
			continue
		}
		return fd, err
	}
}

// Stat is os.Stat of p in the tree.
func (r *Root) Stat(p string) (os.FileInfo, error) {
	if r == nil {
		return os.Stat(p)
	}
	return r.stat(p, unix.O_PATH)
}

// Lstat is os.Lstat of p in the tree: a symbolic link is looked up
// itself.
func (r *Root) Lstat(p string) (os.FileInfo, error) {
	if r == nil {
		return os.Lstat(p)
	}
	return r.stat(p, unix.O_PATH|unix.O_NOFOLLOW)
}

func (r *Root) stat(p string, flags int) (os.FileInfo, error) {
	fd, err := r.Open(p, flags, 0)
	if err != nil {
		// Named with the root: the path alone reads as amber's.
		return nil, &os.PathError{Op: "stat", Path: p + " in " + r.String(), Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	return f.Stat()
}

// Readlink is os.Readlink of p in the tree.
func (r *Root) Readlink(p string) (string, error) {
	if r == nil {
		return os.Readlink(p)
	}
	fd, err := r.Open(p, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", &os.PathError{Op: "readlink", Path: p, Err: err}
	}
	defer unix.Close(fd)
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return "", &os.PathError{Op: "readlink", Path: p, Err: err}
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// Remove removes p, a file or an empty directory of the tree; p itself
// is not followed if it is a symbolic link.
func (r *Root) Remove(p string) error {
	if r == nil {
		return os.Remove(p)
	}
	dir, err := r.Open(path.Dir(p), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return &os.PathError{Op: "remove", Path: p, Err: err}
	}
	defer unix.Close(dir)
	err = unix.Unlinkat(dir, path.Base(p), 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(dir, path.Base(p), unix.AT_REMOVEDIR)
	}
	if err != nil {
		return &os.PathError{Op: "remove", Path: p, Err: err}
	}
	return nil
}

// Link gives the file that amber's path from names (a /proc/PID/fd link
// of an unlinked file, followed) the name to in the tree.
func (r *Root) Link(from, to string) error {
	if r == nil {
		return unix.Linkat(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.AT_SYMLINK_FOLLOW)
	}
	dir, err := r.Open(path.Dir(to), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return &os.LinkError{Op: "link", Old: from, New: to, Err: err}
	}
	defer unix.Close(dir)
	if err := unix.Linkat(unix.AT_FDCWD, from, dir, path.Base(to), unix.AT_SYMLINK_FOLLOW); err != nil {
		return &os.LinkError{Op: "link", Old: from, New: to, Err: err}
	}
	return nil
}

// PathOf is the path, as the tree sees it, of fd, a descriptor of
// amber's open on one of the tree's mounts. The kernel names a file
// outside amber's root from the top of its own mount namespace; the
// tree's root, named the same way, is cut off the front (a tree
// chroot'ed inside its namespace). A file outside the tree's root has
// no path in it: an error.
func (r *Root) PathOf(fd int) (string, error) {
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil || r == nil {
		return p, err
	}
	top, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", r.fd))
	if err != nil {
		return "", err
	}
	if top == "/" {
		return p, nil
	}
	if rest, ok := strings.CutPrefix(p, top); ok && (rest == "" || rest[0] == '/') {
		return "/" + strings.TrimPrefix(rest, "/"), nil
	}
	return "", fmt.Errorf("%s is outside %s (%s)", p, r, top)
}

// ReadOnly tells whether directory dir of the tree is on a read-only
// mount (or filesystem).
func (r *Root) ReadOnly(dir string) (bool, error) {
	fd, err := r.Open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return false, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return false, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return st.Flags&unix.ST_RDONLY != 0, nil
}

// WritableDir opens directory dir of the tree for making and removing
// files in it (openat, unlinkat), even when its mount is read-only:
// then through a private copy of that mount made writable (open_tree,
// mount_setattr), which no process sees and which goes when the
// descriptor is closed. The files are the tree's all the same: one
// filesystem. A filesystem that is itself read-only stays so.
func (r *Root) WritableDir(dir string) (int, error) {
	fd, err := r.Open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil || st.Flags&unix.ST_RDONLY == 0 {
		return fd, nil
	}
	defer unix.Close(fd)
	clone := -1
	// open_tree copies only a mount of the caller's namespace.
	err = r.inMountNamespace(func() (err error) {
		clone, err = unix.OpenTree(fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
		return err
	})
	if err != nil {
		return -1, &os.PathError{Op: "open_tree (a writable copy of its read-only mount)", Path: dir, Err: err}
	}
	err = unix.MountSetattr(clone, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY})
	if err != nil {
		unix.Close(clone)
		return -1, &os.PathError{Op: "mount_setattr (make a copy of its read-only mount writable)", Path: dir, Err: err}
	}
	return clone, nil
}

// inMountNamespace runs fn on a thread of its own that has joined the
// mount namespace of the root's task (amber's, for a root of Dir): a
// thread may enter another mount namespace only once it stops sharing
// its filesystem context with the others (unshare CLONE_FS). The thread
// is never given back to the Go runtime, which ends it.
func (r *Root) inMountNamespace(fn func() error) error {
	if r == nil || r.pid == 0 {
		return fn()
	}
	ns, err := unix.Open(fmt.Sprintf("/proc/%d/ns/mnt", r.pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("the mount namespace of pid %d: %w", r.pid, err)
	}
	defer unix.Close(ns)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- fmt.Errorf("unshare CLONE_FS: %w", err)
			return
		}
		if err := unix.Setns(ns, unix.CLONE_NEWNS); err != nil {
			done <- fmt.Errorf("join the mount namespace of pid %d: %w", r.pid, err)
			return
		}
		done <- fn()
	}()
	return <-done
}
