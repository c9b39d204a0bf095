package mounts

// Running a restore's plan inside the new mount namespace.

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

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
	if r.hostClones, err = cloneExternals(steps); err != nil {
		return nil, err
	}
	r.slaveOfHost = slavesOfHost(steps)
	err = onThread(pid, nsKinds, func() error { return r.run(dir, steps, root, opts) })
	for _, fd := range r.hostClones {
		unix.Close(fd)
	}
	r.hostClones = nil
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
	// hostClones are copies of the host's mounts the external mounts
	// bind (cloneExternals), by dumped mount id, until made.
	hostClones map[uint32]int
	// slaveOfHost are the external mounts that were slaves of the
	// host's mount they bind (a master no mount of the tree is in).
	slaveOfHost map[uint32]bool
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
	rootFd, err := mountRoot(steps[0], root)
	if err != nil {
		return fmt.Errorf("mount %d at / (%s): %w", steps[0].Entry.GetMntId(), steps[0].How, err)
	}
	defer unix.Close(rootFd)
	fd, err := openRootMount(rootFd)
	if err := made(fds, steps[0], opts, fd, err); err != nil {
		return err
	}
	targets := targetsOf(steps)
	for _, s := range steps[1:] {
		fd, err := r.mount(dir, s, fds, targets, rootFd)
		if err := made(fds, s, opts, fd, err); err != nil {
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
	if err := opts.Groups.propagate(steps, fds); err != nil {
		return err
	}
	return unbindable(steps, fds)
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

// made finishes mount step s, whose mount was made, open at fd, or not
// with error err: the mount is kept in fds, for the mounts made on it
// or bound from it and the peer groups given back after, and logged.
// Any error names the mount.
func made(fds map[uint32]int, s Step, opts RestoreOptions, fd int, err error) error {
	if err != nil {
		return fmt.Errorf("mount %d at %s (%s): %w", s.Entry.GetMntId(), s.Target, s.How, err)
	}
	fds[s.Entry.GetMntId()] = fd
	if opts.Logf != nil {
		opts.Logf("mount %d: %s %s at %s", s.Entry.GetMntId(), s.How, s.Source, s.Target)
	}
	return nil
}

// openRootMount opens the root mount of the tree, open at rootFd, for
// fds.
func openRootMount(rootFd int) (int, error) {
	return unix.Openat(rootFd, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// targetsOf maps the dumped ids of steps to their mountpoints.
func targetsOf(steps []Step) map[uint32]string {
	t := map[uint32]string{}
	for _, s := range steps {
		t[s.Entry.GetMntId()] = s.Target
	}
	return t
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
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", root, err)
	}
	if err := setFlags(fd, s.Flags); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// mount makes the mount of step s, attaches it at its mountpoint in its
// parent and returns an O_PATH descriptor of its root. The mount is
// made detached, from descriptors, never from paths of the tree, and
// attached through its parent's descriptor: a mount hidden since by
// another (an overmount) is made and bound from as well as a visible
// one. Paths of the tree resolve inside it (inRoot): a symbolic link of
// the tree's files never leads a mount out of it.
func (r *Restored) mount(dir image.Dir, s Step, fds map[uint32]int, targets map[uint32]string, rootFd int) (int, error) {
	var m int
	var err error
	switch s.How {
	case Bind, External:
		if s.PtySlave {
			if err := r.makePty(s, rootFd); err != nil {
				return -1, err
			}
		}
		m, err = r.cloneSource(s, fds)
	case New:
		m, err = r.newMount(dir, s)
	default:
		err = fmt.Errorf("a %s mount is not made by mount", s.How)
	}
	if err != nil {
		return -1, err
	}
	if err := attach(m, s, fds, targets, rootFd); err != nil {
		unix.Close(m)
		return -1, err
	}
	if err := setFlags(m, s.Flags); err != nil {
		unix.Close(m)
		return -1, err
	}
	if s.How == External {
		if err := r.hostPropagation(m, s); err != nil {
			unix.Close(m)
			return -1, err
		}
	}
	return m, nil
}

// cloneExternals copies, detached, the host's mount at the path each
// external mount of steps binds, in amber's own mount namespace (the
// tree's copy of it is private): a copy of a shared mount is its peer,
// which hostPropagation turns into its slave, as the dumped mount was,
// or private.
func cloneExternals(steps []Step) (map[uint32]int, error) {
	fds := map[uint32]int{}
	for _, s := range steps {
		if s.How != External {
			continue
		}
		// From the root, as on the thread that makes the mounts, whose
		// setns moved it there.
		fd, err := unix.OpenTree(unix.AT_FDCWD, filepath.Join("/", s.Source), unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return nil, fmt.Errorf("bind %s: %w", s.Source, err)
		}
		fds[s.Entry.GetMntId()] = fd
	}
	return fds, nil
}

// slavesOfHost lists the external mounts of steps that were slaves of a
// peer group no mount of steps is in: the host's.
func slavesOfHost(steps []Step) map[uint32]bool {
	groups := map[uint32]bool{}
	for _, s := range steps {
		if id := s.Entry.GetSharedId(); id != 0 {
			groups[id] = true
		}
	}
	out := map[uint32]bool{}
	for _, s := range steps {
		if m := s.Entry.GetMasterId(); s.How == External && m != 0 && !groups[m] {
			out[s.Entry.GetMntId()] = true
		}
	}
	return out
}

// hostPropagation makes the external mount of step s, attached at m, a
// slave of the host's mount it binds if the dumped mount was a slave of
// a peer group no mount of the tree is in (CRIU's external master), and
// private otherwise: never a peer of the host's mounts, whose mounts
// and unmounts would then reach the tree and the tree's the host. The
// tree's own groups are given back after (propagate).
func (r *Restored) hostPropagation(m int, s Step) error {
	how := uint64(unix.MS_PRIVATE)
	if r.slaveOfHost[s.Entry.GetMntId()] {
		how = unix.MS_SLAVE
	}
	if err := setPropagation(m, how); err != nil {
		return fmt.Errorf("mount %d at %s: %w", s.Entry.GetMntId(), s.Target, err)
	}
	return nil
}

// cloneSource makes the bind of step s, detached: a copy of the part of
// the mount it is bound from (open in fds), or of the host's path of an
// external mount, without the mounts under it.
func (r *Restored) cloneSource(s Step, fds map[uint32]int) (int, error) {
	if fd, ok := r.hostClones[s.Entry.GetMntId()]; ok && s.How == External {
		delete(r.hostClones, s.Entry.GetMntId())
		return fd, nil
	}
	if s.How == External {
		fd, err := unix.OpenTree(unix.AT_FDCWD, s.Source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			return -1, fmt.Errorf("bind %s: %w", s.Source, err)
		}
		return fd, nil
	}
	// A copied mount kept under another is not open: another source then.
	if !s.source(false, func(id uint32) bool { _, ok := fds[id]; return ok }) {
		return -1, fmt.Errorf("bind %s: no mount it may be bound from is open", s.Source)
	}
	from := fds[s.bindFrom]
	// The whole source mount alone first: below its root, the part bound
	// is looked up in its own files, not in mounts made on them since.
	whole, err := unix.OpenTree(from, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return -1, fmt.Errorf("bind %s: copy mount %d: %w", s.Source, s.bindFrom, err)
	}
	if s.rel == "." {
		return whole, nil // the whole of it, maybe a file
	}
	defer unix.Close(whole)
	part, err := inRoot(whole, s.rel, unix.O_PATH)
	if err != nil {
		return -1, fmt.Errorf("bind %s: open %s of mount %d: %w", s.Source, s.rel, s.bindFrom, err)
	}
	defer unix.Close(part)
	fd, err := unix.OpenTree(part, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return -1, fmt.Errorf("bind %s: %w", s.Source, err)
	}
	return fd, nil
}

// newMount mounts the filesystem of step s afresh, detached
// (fsopen, fsmount), and fills it if it is a tmpfs. A read-only tmpfs
// is filled first, then made read-only.
func (r *Restored) newMount(dir image.Dir, s Step) (int, error) {
	fs, err := unix.Fsopen(s.FSType, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen %s: %w", s.FSType, err)
	}
	defer unix.Close(fs)
	data := s.Data
	if s.FSType == "proc" {
		data = join(data, fmt.Sprintf("pidns=/proc/%d/ns/pid", r.pid))
	}
	sb := s.SbFlags
	if s.Tmpfs {
		sb &^= unix.MS_RDONLY
	}
	if err := configure(fs, s.Source, data, sb); err != nil {
		return -1, fmt.Errorf("mount %s %q: %w", s.FSType, data, err)
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, fmt.Errorf("mount %s %q: %w", s.FSType, data, err)
	}
	m, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("fsmount %s: %w", s.FSType, err)
	}
	if s.Tmpfs {
		err = fill(dir, s, m, r.ids)
	}
	if err == nil && sb != s.SbFlags {
		err = reconfigure(m, s.SbFlags&^sb)
	}
	if err != nil {
		unix.Close(m)
		return -1, err
	}
	return m, nil
}

// sbOptions are the superblock's MS_ flags as fsconfig names them.
var sbOptions = []struct {
	flag uint32
	name string
}{{unix.MS_RDONLY, "ro"}, {unix.MS_SYNCHRONOUS, "sync"}, {unix.MS_DIRSYNC, "dirsync"}, {unix.MS_MANDLOCK, "mand"}}

// configure gives the filesystem context fs its source, the options of
// data (a list as mount(2) takes: "key=value" or "flag", split on
// commas, as the kernel splits them) and the superblock flags sb.
func configure(fs int, source, data string, sb uint32) error {
	if source != "" {
		if err := unix.FsconfigSetString(fs, "source", source); err != nil {
			return fmt.Errorf("source %q: %w", source, err)
		}
	}
	for _, o := range strings.Split(data, ",") {
		if o == "" {
			continue
		}
		k, v, isValue := strings.Cut(o, "=")
		var err error
		if isValue {
			err = unix.FsconfigSetString(fs, k, v)
		} else {
			err = unix.FsconfigSetFlag(fs, k)
		}
		if err != nil {
			return fmt.Errorf("option %q: %w", o, err)
		}
	}
	return setSbFlags(fs, sb)
}

// setSbFlags sets the superblock flags sb in the filesystem context fs.
func setSbFlags(fs int, sb uint32) error {
	for _, o := range sbOptions {
		if sb&o.flag != 0 {
			if err := unix.FsconfigSetFlag(fs, o.name); err != nil {
				return fmt.Errorf("option %q: %w", o.name, err)
			}
		}
	}
	return nil
}

// reconfigure sets the superblock flags sb of the mount open at m.
func reconfigure(m int, sb uint32) error {
	fs, err := unix.Fspick(m, "", unix.FSPICK_EMPTY_PATH|unix.FSPICK_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fspick: %w", err)
	}
	defer unix.Close(fs)
	if err := setSbFlags(fs, sb); err != nil {
		return err
	}
	if err := unix.FsconfigReconfigure(fs); err != nil {
		return fmt.Errorf("reconfigure with flags %#x: %w", sb, err)
	}
	return nil
}

// attach moves the detached mount m to the mountpoint of step s: below
// the root of its parent mount, open in fds, whatever is mounted over
// that since (an overmount: order attaches a mount hidden by a sibling
// before the sibling). Without its parent open (a copied mount hidden
// under another), the mountpoint is looked up from the tree's root.
func attach(m int, s Step, fds map[uint32]int, targets map[uint32]string, rootFd int) error {
	at, rel := rootFd, s.Target
	if p, ok := fds[s.Entry.GetParentMntId()]; ok {
		if r, ok := below(s.Target, targets[s.Entry.GetParentMntId()]); ok {
			at, rel = p, r
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(m, &st); err != nil {
		return err
	}
	t := at
	if rel != "." {
		if err := makeTarget(at, rel, st.Mode&unix.S_IFMT != unix.S_IFDIR); err != nil {
			return err
		}
		fd, err := inRoot(at, rel, unix.O_PATH)
		if err != nil {
			return fmt.Errorf("open mountpoint %s: %w", s.Target, err)
		}
		defer unix.Close(fd)
		t = fd
	}
	if err := unix.MoveMount(m, "", t, "", moveMountFEmptyPath|moveMountTEmptyPath); err != nil {
		return fmt.Errorf("attach at %s: %w", s.Target, err)
	}
	return nil
}

// below is the path of p below dir, "." for dir itself, if p is there.
func below(p, dir string) (string, bool) {
	if p == dir {
		return ".", true
	}
	if dir == "/" {
		return strings.TrimPrefix(p, "/"), strings.HasPrefix(p, "/")
	}
	rest, ok := strings.CutPrefix(p, dir+"/")
	return rest, ok
}

// setFlags gives the mount open at m its own flags (ro, nosuid, nodev,
// noexec, atime), exactly: each one not in flags is cleared.
func setFlags(m int, flags uint32) error {
	var set uint64
	for _, f := range mountAttrs {
		if flags&f.flag != 0 {
			set |= f.attr
		}
	}
	switch {
	case flags&unix.MS_NOATIME != 0:
		set |= unix.MOUNT_ATTR_NOATIME
	case flags&unix.MS_STRICTATIME != 0:
		set |= unix.MOUNT_ATTR_STRICTATIME
	default:
		set |= unix.MOUNT_ATTR_RELATIME
	}
	attr := unix.MountAttr{
		Attr_set: set,
		Attr_clr: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC |
			unix.MOUNT_ATTR_NODIRATIME | unix.MOUNT_ATTR__ATIME,
	}
	if err := unix.MountSetattr(m, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("set flags %#x: %w", flags, err)
	}
	return nil
}

// mountAttrs are the MS_ flags of a mount with their MOUNT_ATTR_ names
// (the atime ones apart).
var mountAttrs = []struct {
	flag uint32
	attr uint64
}{
	{unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY}, {unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID},
	{unix.MS_NODEV, unix.MOUNT_ATTR_NODEV}, {unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC},
	{unix.MS_NODIRATIME, unix.MOUNT_ATTR_NODIRATIME},
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

// inRoot opens path, a path of the tree, in the tree whose root is open
// at rootFd: symbolic links and ".." resolve as if rootFd were "/".
func inRoot(rootFd int, path string, flags int) (int, error) {
	return unix.Openat2(rootFd, path, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// fill unpacks a tmpfs's contents into it, the new mount open at m.
func fill(dir image.Dir, s Step, m int, ids tarfs.IDs) error {
	fd, err := unix.Openat(m, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the new tmpfs: %w", err)
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
