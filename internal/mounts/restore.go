package mounts

// Running a restore's plan inside the new mount namespace.

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"

	"amber/internal/files"
	"amber/internal/idmap"
	"amber/internal/image"
	"amber/internal/tarfs"
)

// RestoreOptions are the restore's settings for mounts.
type RestoreOptions struct {
	// Root is the directory that becomes the namespace's root (--root):
	// its contents are the root mount's.
	Root string
	// External maps the keys of external mounts to the host paths bound
	// there (--external mnt[KEY]:PATH).
	External map[string]string
	// Logf logs each mount made.
	Logf func(format string, args ...any)
	// Groups are the peer groups of the tree's namespaces restored so
	// far, which the mounts join (nil: every mount is left private).
	Groups *Groups
	// IDs are the maps of the tree's user namespace (nil: amber's):
	// the owners of tmpfs files in the images are that namespace's.
	IDs *idmap.Pair
}

// nsKinds are the namespaces of the restored root that the mounting
// thread enters besides its mount namespace, so that the filesystems it
// mounts afresh belong to them: sysfs to the network namespace, mqueue
// to the IPC one, cgroup to the cgroup one. (proc is given the pid
// namespace by its pidns option.)
var nsKinds = []nsKind{{"net", unix.CLONE_NEWNET}, {"ipc", unix.CLONE_NEWIPC}, {"cgroup", unix.CLONE_NEWCGROUP}}

// Restore makes the mounts of mountpoints-ID.img in the mount namespace
// of pid, a new one the restored root was created in (a copy of amber's),
// and makes opts.Root its root. pid's root and working directory move
// there.
//
// Until Finish, amber's /proc is mounted over the tree's: the restored
// tasks reach amber's descriptors (its images, files it holds for them)
// as /proc/AMBER/fd/N, as they do outside a mount namespace. The tree's
// own /proc stays reachable meanwhile through a descriptor amber holds
// (TreeProc): files under /proc/PID of the tree are opened there.
func Restore(dir image.Dir, id uint32, pid int, opts RestoreOptions) (*Restored, error) {
	if opts.Root == "" {
		return nil, fmt.Errorf("%s: the tree has a mount namespace of its own: give its root with --root", dir.MountpointsPath(id))
	}
	entries, err := Load(dir, id)
	if err != nil {
		return nil, err
	}
	steps, err := Plan(entries, opts.External)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir.MountpointsPath(id), err)
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, err
	}
	r := newRestored(pid, opts.IDs)
	err = onThread(pid, nsKinds, func() error { return r.run(dir, steps, root, opts) })
	if err != nil {
		for _, fd := range r.TakePtys() {
			unix.Close(fd)
		}
		r.Close()
		return nil, err
	}
	return r, nil
}

// newRestored is the record of a mount namespace being made, in which
// pid is, holding no descriptor yet.
func newRestored(pid int, users *idmap.Pair) *Restored {
	return &Restored{pid: pid, ptys: map[uint32]int{}, procFd: -1, ids: outerIDs(users)}
}

// Restored is a mount namespace made by Restore.
type Restored struct {
	pid      int  // a task in it
	procOver bool // amber's /proc is mounted over the tree's
	// procFd is amber's O_PATH descriptor of what the tree has at /proc
	// under amber's (-1: none).
	procFd int
	// ptys are the masters of the ptys made for binds of their slaves,
	// by index, until TakePtys.
	ptys map[uint32]int
	// ids turn the owners of tmpfs files in the images into amber's.
	ids tarfs.IDs
}

// TakePtys hands over the masters of the ptys made for binds of their
// slaves (runc's /dev/console), by index: the terminals of the restore
// use them, and close them.
func (r *Restored) TakePtys() map[uint32]int {
	if r == nil {
		return nil
	}
	p := r.ptys
	r.ptys = nil
	return p
}

// TreeProc is amber's descriptor of the tree's own /proc while amber's
// is mounted over it, -1 if none: a task of the tree opens it through
// /proc/AMBER/fd, as it sees amber's /proc, to reach the procfs of its
// pid namespace where its dumped /proc paths resolve.
func (r *Restored) TreeProc() int {
	if r == nil {
		return -1
	}
	return r.procFd
}

// Close closes amber's descriptor of the tree's /proc, if it holds one.
func (r *Restored) Close() {
	if r == nil || r.procFd < 0 {
		return
	}
	unix.Close(r.procFd)
	r.procFd = -1
}

// AmberProc tells whether amber's /proc is mounted over the tree's
// (until Finish): the namespace's tasks reach amber's PIDs there.
func (r *Restored) AmberProc() bool { return r != nil && r.procOver }

// Finish takes amber's /proc away from over the tree's, once the tasks
// no longer need amber's descriptors.
func (r *Restored) Finish() error {
	r.Close()
	if r == nil || !r.procOver {
		return nil
	}
	return onThread(r.pid, nil, func() error {
		if err := unix.Unmount("/proc", unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount amber's /proc from the restored mount namespace: %w", err)
		}
		r.procOver = false
		return nil
	})
}

// onThread runs fn in pid's mount namespace, and in those of kinds, on a
// thread of its own (inNamespaces).
func onThread(pid int, kinds []nsKind, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- inNamespaces(pid, kinds, fn) }()
	return <-done
}

// nsKind is a kind of namespace: its name in /proc/PID/ns and its flag.
type nsKind struct {
	name string
	flag int
}

// inNamespaces runs fn on the calling goroutine's thread once it has
// entered pid's mount namespace (and those of kinds). The thread never
// goes back: it ends with the goroutine, which must be one of its own.
func inNamespaces(pid int, kinds []nsKind, fn func() error) error {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare the file system attributes: %w", err)
	}
	for _, k := range append([]nsKind{{"mnt", unix.CLONE_NEWNS}}, kinds...) {
		if err := enter(pid, k.name, k.flag); err != nil {
			return err
		}
	}
	return fn()
}

// enter joins pid's namespace of the kind, if not in it already.
func enter(pid int, name string, flag int) error {
	var mine, theirs unix.Stat_t
	at := fmt.Sprintf("/proc/%d/ns/%s", pid, name)
	if err := unix.Stat("/proc/thread-self/ns/"+name, &mine); err != nil {
		return err
	}
	if err := unix.Stat(at, &theirs); err != nil {
		return err
	}
	if mine.Ino == theirs.Ino {
		return nil
	}
	fd, err := unix.Open(at, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, flag); err != nil {
		return fmt.Errorf("enter the %s namespace of pid %d: %w", name, pid, err)
	}
	return nil
}

// run makes the mounts of steps under root, mounts amber's /proc over
// the tree's (if it has /proc), pivots there, then gives the mounts
// their propagation.
func (r *Restored) run(dir image.Dir, steps []Step, root string, opts RestoreOptions) error {
	// The copy of amber's mounts must not pass what happens here back.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the new mount namespace private: %w", err)
	}
	fds := map[uint32]int{} // every mount made, open, by dumped id
	defer closeAll(fds)
	var rootFd int
	for i, s := range steps {
		var err error
		if i == 0 {
			rootFd, err = mountRoot(s, root)
			if err == nil {
				defer unix.Close(rootFd)
			}
		} else {
			err = r.mount(dir, s, rootFd)
		}
		if err := made(fds, s, rootFd, opts, err); err != nil {
			return err
		}
	}
	if st, err := os.Stat(filepath.Join(root, "proc")); err == nil && st.IsDir() {
		fd, err := inRoot(rootFd, "/proc", unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("open the tree's /proc: %w", err)
		}
		r.procFd = fd
		if err := bindAmberProc(filepath.Join(root, "proc")); err != nil {
			return fmt.Errorf("mount amber's /proc over the tree's: %w", err)
		}
		r.procOver = true
	}
	// A shared root could not be pivoted to.
	if err := pivot(root); err != nil {
		return err
	}
	return opts.Groups.propagate(steps, fds)
}

// bindAmberProc binds amber's /proc, as the calling thread's mount
// namespace (a copy of amber's) has it, at at. In a namespace owned by
// a user namespace of the tree's, the mounts under that /proc are
// locked to it and a bind without them is refused (EINVAL): the bind
// then takes them along, and Finish detaches them all at once.
func bindAmberProc(at string) error {
	err := unix.Mount("/proc", at, "", unix.MS_BIND, "")
	if err == unix.EINVAL {
		err = unix.Mount("/proc", at, "", unix.MS_BIND|unix.MS_REC, "")
	}
	return err
}

// made finishes mount step s, whose mount was made with error err: the
// new mount is opened into fds, for the peer groups given back after,
// and logged. Any error names the mount.
func made(fds map[uint32]int, s Step, rootFd int, opts RestoreOptions, err error) error {
	if err == nil {
		err = openMount(fds, s, rootFd)
	}
	if err != nil {
		return fmt.Errorf("mount %d at %s (%s): %w", s.Entry.GetMntId(), s.Target, s.How, err)
	}
	if opts.Logf != nil {
		opts.Logf("mount %d: %s %s at %s", s.Entry.GetMntId(), s.How, s.Source, s.Target)
	}
	return nil
}

// openMount opens the mount of step s, just made at its target in the
// tree whose root is open at rootFd, into fds.
func openMount(fds map[uint32]int, s Step, rootFd int) error {
	fd, err := inRoot(rootFd, s.Target, unix.O_PATH)
	if err != nil {
		return fmt.Errorf("open %s in the new root: %w", s.Target, err)
	}
	fds[s.Entry.GetMntId()] = fd
	return nil
}

// closeAll closes the descriptors of fds.
func closeAll(fds map[uint32]int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// mountRoot binds root, the directory given for the root mount, onto
// itself with the root mount's flags, and opens it.
func mountRoot(s Step, root string) (int, error) {
	if err := unix.Mount(root, root, "", unix.MS_BIND, ""); err != nil {
		return -1, fmt.Errorf("bind %s: %w", root, err)
	}
	if err := unix.Mount("", root, "", s.remountFlags(), ""); err != nil {
		return -1, fmt.Errorf("set flags %#x: %w", s.Flags, err)
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", root, err)
	}
	return fd, nil
}

// mount makes the mount of step s in the tree whose root is open at
// rootFd. Paths of the tree resolve inside it (inRoot): a symbolic link
// of the tree's files never leads a mount out of it.
func (r *Restored) mount(dir image.Dir, s Step, rootFd int) error {
	pid := r.pid
	switch s.How {
	case Bind, External:
		if s.PtySlave {
			if err := r.makePty(s, rootFd); err != nil {
				return err
			}
		}
		src, err := openSource(s, rootFd)
		if err != nil {
			return err
		}
		defer src.Close()
		st, err := src.Stat()
		if err != nil {
			return err
		}
		if err := makeTarget(rootFd, s.Target, !st.IsDir()); err != nil {
			return err
		}
		if err := onTarget(rootFd, s.Target, func(at string) error {
			return unix.Mount(fdPath(src), at, "", unix.MS_BIND, "")
		}); err != nil {
			return fmt.Errorf("bind %s: %w", s.Source, err)
		}
	case New:
		if err := makeTarget(rootFd, s.Target, false); err != nil {
			return err
		}
		data := s.Data
		if s.FSType == "proc" {
			data = join(data, fmt.Sprintf("pidns=/proc/%d/ns/pid", pid))
		}
		// A read-only tmpfs is filled first, then made read-only.
		sb := uintptr(s.SbFlags)
		if s.Tmpfs {
			sb &^= unix.MS_RDONLY
		}
		if err := onTarget(rootFd, s.Target, func(at string) error {
			return unix.Mount(s.Source, at, s.FSType, sb, data)
		}); err != nil {
			return fmt.Errorf("mount %s %q: %w", s.FSType, data, err)
		}
		if s.Tmpfs {
			if err := fill(dir, s, rootFd, r.ids); err != nil {
				return err
			}
		}
		if sb != uintptr(s.SbFlags) {
			if err := onTarget(rootFd, s.Target, func(at string) error {
				return unix.Mount("", at, "", unix.MS_REMOUNT|uintptr(s.SbFlags), data)
			}); err != nil {
				return fmt.Errorf("make the %s read-only: %w", s.FSType, err)
			}
		}
	}
	// The target again: now the mount just made.
	if err := onTarget(rootFd, s.Target, func(at string) error { return unix.Mount("", at, "", s.remountFlags(), "") }); err != nil {
		return fmt.Errorf("set flags %#x: %w", s.Flags, err)
	}
	return nil
}

// makePty makes pty s.PtyIndex of the devpts whose slave s binds, at the
// ptmx beside it, unless it is there already: the slave's node exists
// only while the pty does. The master is kept for the terminals.
func (r *Restored) makePty(s Step, rootFd int) error {
	if _, ok := r.ptys[s.PtyIndex]; ok {
		return nil
	}
	ptmx := path.Join(path.Dir(s.Source), "ptmx")
	open := func() (int, error) { return inRoot(rootFd, ptmx, unix.O_RDWR|unix.O_NOCTTY) }
	m, index, err := files.OpenPtmxIndex(open, ptmx, s.PtyIndex)
	if err != nil {
		return fmt.Errorf("make pty %d for its slave: %w", s.PtyIndex, err)
	}
	if index != s.PtyIndex {
		unix.Close(m)
		return fmt.Errorf("make pty %d for its slave: %s gave pty %d: %d is taken", s.PtyIndex, ptmx, index, s.PtyIndex)
	}
	r.ptys[index] = m
	return nil
}

// openSource opens what step s binds: a path of the tree, or of the
// host for an external mount.
func openSource(s Step, rootFd int) (*os.File, error) {
	if s.How == External {
		fd, err := unix.Open(s.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", s.Source, err)
		}
		return os.NewFile(uintptr(fd), s.Source), nil
	}
	fd, err := inRoot(rootFd, s.Source, unix.O_PATH)
	if err != nil {
		return nil, fmt.Errorf("open %s in the new root: %w", s.Source, err)
	}
	return os.NewFile(uintptr(fd), s.Source), nil
}

// inRoot opens path, a path of the tree, in the tree whose root is open
// at rootFd: symbolic links and ".." resolve as if rootFd were "/".
func inRoot(rootFd int, path string, flags int) (int, error) {
	return unix.Openat2(rootFd, path, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// onTarget runs fn on the mountpoint path of the tree (inRoot), named
// through /proc/self/fd.
func onTarget(rootFd int, path string, fn func(at string) error) error {
	fd, err := inRoot(rootFd, path, unix.O_PATH)
	if err != nil {
		return fmt.Errorf("open %s in the new root: %w", path, err)
	}
	defer unix.Close(fd)
	return fn(fmt.Sprintf("/proc/self/fd/%d", fd))
}

// fdPath names an open file through /proc/self/fd.
func fdPath(f *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", f.Fd()) }

// fill unpacks a tmpfs's contents into it, the mount now at s.Target.
func fill(dir image.Dir, s Step, rootFd int, ids tarfs.IDs) error {
	fd, err := inRoot(rootFd, s.Target, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("open %s in the new root: %w", s.Target, err)
	}
	d := os.NewFile(uintptr(fd), s.Target)
	defer d.Close()
	return restoreTmpfs(dir, d, s.Entry, ids)
}

// join appends an option to a list of options.
func join(opts, o string) string {
	if opts == "" {
		return o
	}
	return opts + "," + o
}

// makeTarget makes the mountpoint path of the tree if it is missing, and
// its missing parents: a directory, or an empty file if file is set.
func makeTarget(rootFd int, target string, file bool) error {
	fd, err := inRoot(rootFd, target, unix.O_PATH)
	if err == nil {
		return unix.Close(fd)
	}
	if !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("open %s in the new root: %w", target, err)
	}
	parent := filepath.Dir(target)
	if err := makeTarget(rootFd, parent, false); err != nil {
		return err
	}
	pfd, err := inRoot(rootFd, parent, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("open %s in the new root: %w", parent, err)
	}
	defer unix.Close(pfd)
	name := filepath.Base(target)
	if !file {
		if err := unix.Mkdirat(pfd, name, 0o755); err != nil {
			return fmt.Errorf("make mountpoint %s: %w", target, err)
		}
		return nil
	}
	ffd, err := unix.Openat(pfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("make mountpoint %s: %w", target, err)
	}
	return unix.Close(ffd)
}

// pivot makes root the namespace's root: every task whose root or
// working directory is the old root moves there, and the old root is
// let go.
func pivot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root to %s: %w", root, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("let the old root go: %w", err)
	}
	return unix.Chdir("/")
}
