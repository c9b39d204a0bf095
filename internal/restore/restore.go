// Package restore brings a dumped process back from an images directory.
// Run reads like CRIU's cr_restore_tasks: read and check the images, fork
// a task with the dumped PID from a stub, compute its plan (package plan)
// and make the task run it, then load its registers and let it go. A
// restore that fails kills what it created: no task, no stub, no PID
// stays behind.
//
// The images decide what the restored process runs as and opens, with
// the power of whoever runs amber: unless Options.TrustImages, a restore
// refuses images that a user other than root and the caller can write
// (image.OpenTrustedDir), naming the path at fault.
package restore

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"amber/internal/cgroups"
	"amber/internal/compel"
	"amber/internal/cpu"
	"amber/internal/files"
	"amber/internal/fsroot"
	"amber/internal/image"
	"amber/internal/ipc"
	"amber/internal/kerndat"
	"amber/internal/lazy"
	"amber/internal/log"
	"amber/internal/mem"
	"amber/internal/mounts"
	"amber/internal/namespaces"
	"amber/internal/plan"
	"amber/internal/proc"
	ptree "amber/internal/pstree"
	"amber/internal/rlimit"
	"amber/internal/taskattr"
)

// Options are the restore settings of CRIU's command line.
type Options struct {
	ImagesDir string // -D, --images-dir
	Detach    bool   // -d, --restore-detached
	ShellJob  bool   // -j, --shell-job
	// SkipFileCheck restores files whose size or modification time
	// changed since the dump (--skip-file-check).
	SkipFileCheck bool
	// TCPEstablished restores established TCP connections
	// (--tcp-established).
	TCPEstablished bool
	// TCPClose restores TCP connections closed, as sockets shut down both
	// ways (--tcp-close).
	TCPClose bool
	// ExtUnixSk connects sockets to the external unix sockets of the
	// images by name (--ext-unix-sk).
	ExtUnixSk bool
	// FileLocks takes the file locks of filelocks.img again
	// (--file-locks); without it images with locks are refused.
	FileLocks bool
	// LazyPages leaves private anonymous memory to the lazy-pages daemon
	// serving ImagesDir (--lazy-pages): the tasks run before it is in.
	LazyPages bool
	// TrustImages restores images that users other than root and the
	// caller can write (--trust-images); without it they are refused.
	TrustImages bool
	// Root is the directory that becomes the root of the tree's mount
	// namespace when it has one of its own (--root).
	Root string
	// ExtMounts gives the host paths bound at the external mounts of the
	// tree's mount namespace (--external mnt[KEY]:PATH): key to path.
	ExtMounts map[string]string
	// ManageCgroups is --manage-cgroups: what to do with the cgroups of
	// cgroup.img (cgroups.Ignore: nothing).
	ManageCgroups cgroups.Mode
	// CgroupRoots are --cgroup-root: new roots of the dumped cgroups.
	CgroupRoots []cgroups.Root
	// CgroupYard is --cgroup-yard: a directory where the caller has
	// mounted every hierarchy, used in place of amber's own mounts.
	CgroupYard string
	// EmptyNet leaves the tree's new network namespace as it comes, for
	// the container engine to set up (--empty-ns net).
	EmptyNet bool
	// ExtVeths are the outside ends of the veths of the tree's network
	// namespace, by the veth's name (--external
	// veth[IFNAME]:OUTNAME[@BRIDGE]).
	ExtVeths map[string]namespaces.ExtVeth
	// InheritFds are amber's descriptors that the restored tasks get in
	// place of files of the images (--inherit-fd fd[N]:KEY, RPC
	// inherit_fd); a key that names no file is ignored, as CRIU does,
	// with a warning.
	InheritFds []files.InheritFd
	// JoinNet is the network namespace the root joins instead of a new
	// one (--join-ns net:PATH), "" for none.
	JoinNet string
	Log     *log.Logger
	// Notify, if set, is called at CRIU's action-script points, by
	// CRIU's names, with the root's PID where CRIU gives one:
	// "pre-restore" before any task is created, "post-restore" (PID)
	// once every task is restored, before their TCP connections leave
	// repair mode, "pre-resume" before they are released and
	// "post-resume" after. An error before the tasks run fails the
	// restore and kills them; after "pre-resume" it is only logged, as
	// CRIU does. When the root is restored in new namespaces,
	// "setup-namespaces" (PID) comes once it is created, before its
	// namespaces are set up, and "post-setup-namespaces" after;
	// "network-unlock" after "post-restore" when the root has a network
	// namespace of its own, before the dump's lock on it is lifted.
	Notify func(action string, pid int) error

	// OrphanPtsMaster, if set, lets a pty slave whose master was not
	// dumped (a container's terminal, dumped with orphan_pts_master)
	// come back on a new pty, whose master it is given once the tree's
	// namespaces are set up (CRIU's orphan-pts-master notification);
	// amber closes its own copy when the restore ends.
	OrphanPtsMaster func(master int) error
}

// Result tells what was restored.
type Result struct {
	Pid int // PID of the restored root task
}

// Run restores the images in opts.ImagesDir. The restored root is a child
// of the calling process: without Detach the caller waits for it.
func Run(opts Options) (Result, error) {
	if opts.Log == nil {
		opts.Log = log.Discard()
	}
	start := time.Now()
	dir, err := openImages(opts)
	if err != nil {
		return Result{}, fmt.Errorf("restore: %w", err)
	}
	defer dir.Close()
	check, err := verifyImages(dir, opts.LazyPages, opts.Log)
	if err != nil {
		return Result{}, fmt.Errorf("restore: %w", untrustedHint(err))
	}
	defer check.Stop()
	opts.Log.Debugf("images opened and checked in %v", time.Since(start))
	tree, err := load(dir, opts.ShellJob, opts.LazyPages)
	if err != nil {
		return Result{}, fmt.Errorf("restore: %w", untrustedHint(err))
	}
	defer tree.closeParents()
	tree.pagesCheck = check
	opts.Log.Infof("images of %d processes read in %v", len(tree.tasks), time.Since(start))
	var res Result
	if err := restoreTree(tree, opts, &res); err != nil {
		return Result{}, fmt.Errorf("restore pid %d: %w", tree.root.pid, untrustedHint(err))
	}
	return res, nil
}

// openImages opens the images directory, refusing images that anyone but
// root and the caller can write (image.OpenTrustedDir) unless
// --trust-images.
func openImages(opts Options) (image.Dir, error) {
	if opts.TrustImages {
		return image.OpenDir(opts.ImagesDir)
	}
	d, err := image.OpenTrustedDir(opts.ImagesDir, os.Getuid())
	return d, untrustedHint(err)
}

// untrustedHint says what to do about images refused as untrusted.
func untrustedHint(err error) error {
	if !errors.Is(err, image.ErrUntrusted) {
		return err
	}
	return fmt.Errorf("%w; whoever can write the images chooses what the restored process runs as and opens: check them, and restore with --trust-images if they are sound", err)
}

// restoreTree restores every process of the tree, then releases them all
// at once. Phases, as in CRIU's restore: every process is forked from its
// restored parent (the root from amber's stub) and runs its main section;
// its threads are created; then every thread runs its own section, and the
// registers are loaded; then all are released. res gets the root's PID
// in amber's pid namespace.
func restoreTree(tree *treeImages, opts Options, res *Result) (err error) {
	if err := notify(opts, "pre-restore", 0); err != nil {
		return err
	}
	nsFlags, err := newNamespaces(tree)
	if err != nil {
		return err
	}
	if nsFlags != 0 {
		opts.Log.Infof("the root is restored in new namespaces (clone flags %#x)", nsFlags)
	}
	// A new pid namespace has every PID free.
	if nsFlags&unix.CLONE_NEWPID == 0 {
		if err := checkPidsFree(tree); err != nil {
			return err
		}
	}
	h, err := newHost(opts)
	if err != nil {
		return err
	}
	h.hiddenAmber = nsFlags&unix.CLONE_NEWPID != 0
	defer func() { h.root.Close() }() // opened with the tree's mounts
	if nsFlags&unix.CLONE_NEWUSER != 0 {
		// Read first: the files amber makes before the namespace is
		// (ghosts) are owned by their ids in amber's view.
		if h.users, err = namespaces.ReadUserMaps(tree.dir, tree.root.ids.GetUserNsId()); err != nil {
			return err
		}
	}
	extNet, err := externalNet(tree, h, nsFlags)
	if err != nil {
		return err
	}
	joined, err := joinNet(opts, nsFlags, tree.dir.String())
	if err != nil {
		return err
	}
	if joined >= 0 {
		defer unix.Close(joined)
		opts.Log.Infof("--join-ns net:%s: the root joins that network namespace", opts.JoinNet)
		extNet = joined
	}
	ownNet := nsFlags&unix.CLONE_NEWNET != 0
	if extNet >= 0 {
		opts.Log.Infof("the network namespace is external: the root joins amber's fd %d", extNet)
		nsFlags &^= unix.CLONE_NEWNET
	}
	for _, k := range files.UnusedInheritKeys(h.inherit, tree.root.files) {
		if fd, ok := h.inherit[k]; !ok || fd != extNet {
			opts.Log.Warnf("--inherit-fd %s: no file of the images has this key: ignored", k)
		}
	}
	if tree.stat != nil {
		h.stat = tree.stat
	}
	h.lone = tree.loneFiles()
	h.treePids = tree.pids()
	if h.locks, err = tree.locksToTake(opts.FileLocks); err != nil {
		return err
	}
	// The mapped unlinked files of a tree in a mount namespace of its
	// own are made once its mounts are (setupNamespaces).
	var ghosts *files.HostGhosts
	if nsFlags&unix.CLONE_NEWNS == 0 {
		if ghosts, err = makeGhosts(tree, h); err != nil {
			return err
		}
	}
	// Whatever way the restore ends, no ghost stays (a no-op once
	// removed before release).
	defer func() {
		if rerr := ghosts.Remove(); rerr != nil {
			opts.Log.Errorf("remove the unlinked files made again: %v", rerr)
		}
	}()
	if h.ttys, err = prepareTerminals(tree, opts, h); err != nil {
		return err
	}
	defer h.ttys.Close()
	if nsFlags&unix.CLONE_NEWPID != 0 {
		h.ttys.SetReopen()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, pinned, err := compel.Pin()
	if err != nil {
		return err
	}
	defer compel.Unpin(orig)
	// The dead processes of a new pid namespace's pidfds are made in it,
	// once it exists.
	if nsFlags&unix.CLONE_NEWPID == 0 {
		dead, err := openDeadPidfds(tree)
		if err != nil {
			return err
		}
		defer dead.Close()
		h.deadPidfds = dead.FileFds()
	}
	hostNs, err := files.OpenHostNs(tree.root.files, tree.rootIDs)
	if err != nil {
		return err
	}
	defer hostNs.Close()
	h.hostNs = hostNs.Fds
	r := &restorer{cpus: orig, pinned: pinned, xsave: cpu.HostLayout(), opts: opts, host: h, holders: map[uint32]files.Holder{}, hostPids: map[int]int{}, pidMax: pidMax(), treePids: tree.pids(), ownNet: ownNet,
		tree: tree, makers: map[*ptree.Node]maker{}, endings: map[*ptree.Node]ending{}}
	for pid := range tree.plan.Pids() {
		r.treePids[pid] = true // helpers' too
	}
	h.shared = r.holder
	r.netns = map[uint32]int{tree.root.ids.GetNetNsId(): tree.root.pid}
	h.netnsPid = func(id uint32) (int, bool) {
		pid, ok := r.netns[id]
		return pid, ok
	}
	h.procPid = r.procPid
	r.memfdHolders = map[uint32]files.Holder{}
	h.memfdHolder = r.memfdHolder
	// The cgroups made are removed once the tasks are killed: deferred
	// before the kill.
	if r.cg, err = prepareCgroups(tree, opts); err != nil {
		return err
	}
	defer r.cg.Close()
	r.mntGroups = mounts.NewGroups()
	defer r.mntGroups.Close()
	defer func() {
		if err != nil {
			if uerr := r.cg.Undo(); uerr != nil {
				opts.Log.Errorf("remove the cgroups made: %v", uerr)
			}
		}
	}()
	if opts.LazyPages {
		if r.lazy, err = lazy.Dial(opts.ImagesDir); err != nil {
			return err
		}
		// Closed once every task is handed over, or killed: the daemon
		// then ends when it has nothing left to do.
		defer r.lazy.Close()
	}
	defer func() {
		// A bug of amber's must not leave half-restored tasks behind.
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error: %v\n%s", p, debug.Stack())
		}
		if err != nil {
			r.killAll()
			r.removeTemporaries()
		}
	}()
	// The segments of a new IPC namespace are made with it
	// (setupNamespaces).
	if nsFlags&unix.CLONE_NEWIPC == 0 {
		if r.sysv, err = ipc.RestoreShm(tree.dir, tree.root.ids.GetIpcNsId()); err != nil {
			return err
		}
	}
	defer func() {
		if err != nil {
			r.sysv.Undo()
		}
	}()
	stub, err := compel.StartStub()
	if err != nil {
		return err
	}
	defer stub.Close()
	if len(h.inherit) > 0 || len(h.hostNs) > 0 || extNet >= 0 || (h.hiddenAmber && (h.ttys.Any() || opts.ShellJob)) {
		// The root, forked from the stub, takes amber's descriptors
		// through this pidfd, whatever pid namespace it is born in (in a
		// new one, every terminal file of the tree, amber's own of a
		// --shell-job too: files.PlanFds).
		if h.amberPidfd, err = stub.HoldPidfd(os.Getpid()); err != nil {
			return err
		}
	}
	if extNet >= 0 {
		if err := stub.JoinNamespace(h.amberPidfd, extNet, unix.CLONE_NEWNET); err != nil {
			return err
		}
	}
	forkFlags, err := r.newUserNamespace(tree, stub, nsFlags)
	if err != nil {
		return err
	}
	if h.creds, err = stubCreds(stub, h.users); err != nil {
		return err
	}
	if forkFlags, err = newTimeNamespace(tree, stub, forkFlags); err != nil {
		return err
	}
	if forkFlags, err = r.newCgroupNamespace(stub, forkFlags); err != nil {
		return err
	}
	root, err := stub.ForkIn(tree.root.pid, uint64(forkFlags))
	if err != nil {
		return forkError(tree.root.pid, err)
	}
	if err := r.cg.MoveBack(stub.Pid); err != nil {
		return err
	}
	r.created = append(r.created, root)
	res.Pid = root.Pid
	if root.Pid != tree.root.pid {
		opts.Log.Infof("pid %d of the new pid namespace is pid %d", tree.root.pid, root.Pid)
	}
	// amber's descriptor of the tree's /proc, if the mounts leave one,
	// is closed however the restore ends.
	defer func() { r.mounts.Close() }()
	if err := r.setupNamespaces(tree, root.Pid, nsFlags); err != nil {
		return err
	}
	if nsFlags&unix.CLONE_NEWNS != 0 {
		if ghosts, err = makeGhosts(tree, h); err != nil {
			return err
		}
	}
	if err := r.openTerminals(root.Pid, nsFlags); err != nil {
		return err
	}
	if nsFlags&unix.CLONE_NEWPID != 0 {
		dead, err := openDeadPidfdsIn(tree, root.Pid)
		if err != nil {
			return err
		}
		defer dead.Close()
		h.deadPidfds = dead.FileFds()
	}
	if err := r.forkDeadHelpers(root, stub); err != nil {
		return err
	}
	if h.users != nil {
		if err := r.giveToStub(stub); err != nil {
			return err
		}
	}
	if err := r.restoreProcess(root, stub.Insn(), tree.root, &origin{}); err != nil {
		return err
	}
	if err := r.joinGroups(); err != nil {
		return err
	}
	if err := r.endHelpers(); err != nil {
		return err
	}
	if err := r.endZombies(); err != nil {
		return err
	}
	// Every task's memory is filled: the pages images, checked meanwhile,
	// must have been those dumped before anything is let go.
	if err := tree.waitPagesCheck(r.lazySpans(), opts.Log); err != nil {
		return err
	}
	for _, p := range r.procs {
		if err := r.finish(p); err != nil {
			return fmt.Errorf("pid %d: %w", p.t.pid, err)
		}
	}
	if err := notify(opts, "post-restore", root.Pid); err != nil {
		return err
	}
	// The segments amber makes for the connections (FINs, the resets
	// of ended ones) carry the lock's mark: made under it, they pass it
	// and the rules of the tree's own that come after it (a firewall of
	// the tree dropping them, as zdtm's socket-tcp-closed-last-ack has).
	// The connections leave repair mode once it is lifted, as CRIU's do:
	// the kernel's window probes then reach the peers at once (zdtm's
	// socket-tcp-reseted: a connection whose peer was reset learns it).
	tcp, err := r.endTCPRepair(tree)
	if err != nil {
		return err
	}
	defer tcp.Close()
	if err := r.closeTCP(tree); err != nil {
		return err
	}
	r.unlockNetwork(tree, root.Pid)
	if err := tcp.Leave(); err != nil {
		return err
	}
	if err := r.sysv.Finish(); err != nil {
		return err
	}
	if err := h.ttys.Finish(); err != nil {
		return err
	}
	if err := r.cg.Finish(); err != nil {
		return err
	}
	if err := ghosts.Remove(); err != nil {
		return fmt.Errorf("remove the unlinked files made again: %w", err)
	}
	r.removeLinkRemaps(tree)
	if err := r.finishMountNs(); err != nil {
		return err
	}
	return r.resume(opts)
}

// newNamespaces returns the namespaces the root of the tree is to be
// created in (namespaces.CloneFlags), and logs them.
func newNamespaces(tree *treeImages) (uintptr, error) {
	flags, err := namespaces.CloneFlags(tree.rootIDs, tree.root.ids)
	if err != nil || flags == 0 {
		return 0, err
	}
	if flags&unix.CLONE_NEWPID != 0 && tree.root.pid != 1 {
		return 0, fmt.Errorf("%s: the root, pid %d, is in a pid namespace of its own whose init it is not: not supported", tree.dir.PstreePath(), tree.root.pid)
	}
	return flags, nil
}

// externalNet is amber's descriptor of the network namespace the root
// joins, -1 if none: the tree's own namespace was left external at dump
// (--external net[INO]:KEY) and --inherit-fd fd[N]:KEY gives N, as
// runc gives the container's namespace to CRIU.
func externalNet(tree *treeImages, h *host, nsFlags uintptr) (int, error) {
	if nsFlags&unix.CLONE_NEWNET == 0 {
		return -1, nil
	}
	id := tree.root.ids.GetNetNsId()
	key, err := namespaces.ExtNetKey(tree.dir, id)
	if err != nil || key == "" {
		return -1, err
	}
	fd, ok := h.inherit[key]
	if !ok {
		return -1, fmt.Errorf("%s: the network namespace was left external with key %s: restore with --inherit-fd fd[N]:%s, N a descriptor of the namespace to join", tree.dir.NetnsPath(id), key, key)
	}
	return fd, nil
}

// newUserNamespace makes the user namespace of the root, if nsFlags has
// one, first, as CRIU's restore does: the stub unshares it and amber,
// in its parent, writes its maps (userns-ID.img), so that every other
// namespace the stub then makes, and the root forked from it, is owned
// by it. From then on the ids of the images are the namespace's: amber
// turns them into its own where it sets them itself (host.users). It
// returns the flags to fork the root with.
func (r *restorer) newUserNamespace(tree *treeImages, stub *compel.Stub, nsFlags uintptr) (uintptr, error) {
	if nsFlags&unix.CLONE_NEWUSER == 0 {
		return nsFlags, nil
	}
	users := r.host.users
	// The tasks will not be allowed to open amber's descriptors
	// (/proc/AMBER/fd, a process of a parent user namespace): they open
	// the images, the tree's and its parents', through the stub's copies
	// of amber's descriptors of their directories.
	if r.host.amberPidfd == 0 {
		var err error
		if r.host.amberPidfd, err = stub.HoldPidfd(os.Getpid()); err != nil {
			return 0, err
		}
	}
	for _, d := range tree.dirs() {
		if fd := d.Fd(); fd >= 0 {
			held, err := stub.TakeFd(r.host.amberPidfd, fd)
			if err != nil {
				return 0, err
			}
			d.TasksVia(stub.Pid, held)
		}
	}
	if err := stub.Unshare(unix.CLONE_NEWUSER); err != nil {
		return 0, err
	}
	if err := namespaces.WriteUserMaps(stub.Pid, users); err != nil {
		return 0, err
	}
	r.opts.Log.Infof("user namespace made: uid_map %q, gid_map %q", users.Uid.String(), users.Gid.String())
	// The namespace's group 0, as CRIU's tasks are (prepare_userns_creds):
	// what needs a group of the namespace while the tasks restore (an
	// ICMP socket, whose net.ipv4.ping_group_range the namespace sets)
	// has it. amber's uid stays: the tasks read the images as their
	// owner, which the namespace's root, an id amber does not know,
	// could not.
	if _, ok := users.Gid.Outer(0); ok {
		if err := stub.SetGroup(0); err != nil {
			return 0, err
		}
	}
	// The root takes amber's descriptors from the stub (giveToStub),
	// through a pidfd of it it is born with.
	var err error
	if r.host.amberPidfd, err = stub.HoldPidfd(stub.Pid); err != nil {
		return 0, err
	}
	r.host.loginuid = taskattr.InnerLoginuid(r.host.loginuid, users)
	return nsFlags &^ unix.CLONE_NEWUSER, nil
}

// newTimeNamespace makes the time namespace of the root, if nsFlags has
// one, in the stub: the stub unshares it and amber sets its offsets
// before the root is forked into it, the only time the kernel lets
// them be set. It returns the flags to fork the root with.
func newTimeNamespace(tree *treeImages, stub *compel.Stub, nsFlags uintptr) (uintptr, error) {
	if nsFlags&unix.CLONE_NEWTIME == 0 {
		return nsFlags, nil
	}
	if err := stub.Unshare(unix.CLONE_NEWTIME); err != nil {
		return 0, err
	}
	if err := namespaces.RestoreTime(tree.dir, tree.root.ids.GetTimeNsId(), stub.Pid); err != nil {
		return 0, err
	}
	return nsFlags &^ unix.CLONE_NEWTIME, nil
}

// newCgroupNamespace makes the cgroup namespace of the root, if nsFlags
// has one, in the stub: a cgroup namespace is rooted where its creator
// is, so the stub moves into the namespace's root cgroups (cgroup.img's
// cgns_prefix) and unshares it, and the root is forked into it. It
// returns the flags to fork the root with; the caller moves the stub
// back once the root is made.
func (r *restorer) newCgroupNamespace(stub *compel.Stub, nsFlags uintptr) (uintptr, error) {
	if nsFlags&unix.CLONE_NEWCGROUP == 0 {
		return nsFlags, nil
	}
	if err := r.cg.EnterNamespaceRoot(stub.Pid); err != nil {
		return 0, err
	}
	if err := stub.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return 0, err
	}
	return nsFlags &^ unix.CLONE_NEWCGROUP, nil
}

// setupNamespaces sets up the new namespaces (flags) the root, pid in
// amber's namespace, was created in, between CRIU's notifications
// around it.
func (r *restorer) setupNamespaces(tree *treeImages, pid int, flags uintptr) error {
	if flags == 0 {
		return nil
	}
	if err := notify(r.opts, "setup-namespaces", pid); err != nil {
		return err
	}
	if flags&unix.CLONE_NEWIPC != 0 {
		// Before the namespace's settings, which they would use up.
		var err error
		if r.sysv, err = ipc.RestoreNamespace(tree.dir, tree.root.ids.GetIpcNsId(), pid); err != nil {
			return err
		}
	}
	if err := namespaces.Restore(tree.dir, pid, flags, tree.root.ids); err != nil {
		return err
	}
	if flags&unix.CLONE_NEWNS != 0 {
		if err := r.restoreMounts(tree, pid); err != nil {
			return err
		}
	}
	if flags&unix.CLONE_NEWNET != 0 {
		if err := namespaces.RestoreNet(tree.dir, tree.root.ids.GetNetNsId(), pid, r.netOptions(tree)); err != nil {
			return err
		}
	}
	return notify(r.opts, "post-setup-namespaces", 0)
}

// restoreMounts makes the mounts of the root's new mount namespace, pid
// its PID in amber's, and from then on looks files up as the tree sees
// them: under its root.
func (r *restorer) restoreMounts(tree *treeImages, pid int) error {
	opts := mounts.RestoreOptions{Root: r.opts.Root, External: r.opts.ExtMounts, Logf: r.opts.Log.Infof, Groups: r.mntGroups, IDs: r.host.users}
	m, err := mounts.Restore(tree.dir, tree.root.ids.GetMntNsId(), pid, opts)
	if err != nil {
		return err
	}
	r.mounts = m
	if fd := m.TreeProc(); fd >= 0 {
		r.host.treeProc = fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd)
	}
	r.mntDir = tree.dir
	r.mntns = map[uint32]mntNs{tree.root.ids.GetMntNsId(): {pid: tree.root.pid, restored: m}}
	if err := r.loadMountNs(tree); err != nil {
		return err
	}
	r.host.mountRoot = r.mountRoot
	r.host.ttys.AdoptPtys(m.TakePtys())
	for _, d := range tree.dirs() {
		d.TasksViaProc()
	}
	if r.host.root, err = fsroot.Of(pid); err != nil {
		return err
	}
	r.host.stat = r.host.root.Stat
	return nil
}

// resume releases every task between the pre-resume and post-resume
// notifications, whose failures, as CRIU's, are only logged.
func (r *restorer) resume(opts Options) error {
	if err := notify(opts, "pre-resume", 0); err != nil {
		opts.Log.Errorf("%v", err)
	}
	if err := r.releaseAll(); err != nil {
		return err
	}
	if err := notify(opts, "post-resume", 0); err != nil {
		opts.Log.Errorf("%v", err)
	}
	return nil
}

// notify runs the Notify hook, if any, for action.
func notify(opts Options, action string, pid int) error {
	if opts.Notify == nil {
		return nil
	}
	opts.Log.Debugf("notify %s", action)
	if err := opts.Notify(action, pid); err != nil {
		return fmt.Errorf("%s notification: %w", action, err)
	}
	return nil
}

// restorer carries one restore's state.
type restorer struct {
	opts Options
	tree *treeImages
	// temporaries are the paths the plans made so far make and remove
	// again (plan.Program.Temporaries), in the order made.
	temporaries []string
	// makers are the tasks made so far, by node of the tree's plan, and
	// endings the zombies and helpers among them.
	makers  map[*ptree.Node]maker
	endings map[*ptree.Node]ending
	// ownNet: the root is in a network namespace of its own (new,
	// joined or external), whose lock the restore lifts.
	ownNet  bool
	cg      *cgroups.Restorer // nil without cgroups to restore
	host    *host
	procs   []*process     // restored so far, parents first
	created []*compel.Task // every task made, to kill on failure
	holders map[uint32]files.Holder
	// memfdHolders are the tasks holding each memfd inode, by inode id.
	memfdHolders map[uint32]files.Holder
	// hostPids are the PIDs in amber's pid namespace of the processes
	// made so far, by their PIDs in the images.
	hostPids map[int]int
	// pidMax and treePids let fill threads take TIDs nobody needs.
	pidMax   int
	treePids map[int]bool
	// cpus is amber's affinity, which restored tasks get back when
	// released; until then they share the tracer's pinned CPU, which
	// makes ptrace round trips short, except while they fill memory.
	cpus, pinned unix.CPUSet
	// lazy is the connection to the lazy-pages daemon (--lazy-pages).
	lazy *lazy.Client
	// xsave is this CPU's XSAVE layout, probed once: CPUID costs a VM
	// exit.
	xsave cpu.Layout
	// mounts is the tree's mount namespace, when it has one of its own.
	mounts *mounts.Restored
	// mntns are the tree's mount namespaces made so far, by id, the
	// root's first, read from mntDir; none if the root is in amber's.
	mntns  map[uint32]mntNs
	mntDir image.Dir
	// netns are the tree's network namespaces made so far: a task in
	// each, by its PID in the images and by the namespace's id.
	netns map[uint32]int
	// mntOf are the namespaces of the dumped mounts, by mount id.
	mntOf map[int32]uint32
	// mntGroups are the mount peer groups given back so far.
	mntGroups *mounts.Groups
	// sysv are the SysV shared memory segments made, in amber's IPC
	// namespace or in the tree's new one.
	sysv *ipc.Segments
	// dead are the helpers of dead PIDs still to end.
	dead []deadHelper
}

// pidMax reads kernel.pid_max, 32768 if it cannot.
func pidMax() int {
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		return 32768
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 32768
	}
	return n
}

// loneFiles tells the files that only one descriptor table of the tree
// has (tasks sharing a table with CLONE_FILES count once).
func (t *treeImages) loneFiles() func(fileID uint32) bool {
	tables := map[uint32]map[uint32]bool{} // file id -> files ids
	for _, p := range t.tasks {
		table := p.ids.GetFilesId()
		for _, f := range p.fds {
			if tables[f.GetId()] == nil {
				tables[f.GetId()] = map[uint32]bool{}
			}
			tables[f.GetId()][table] = true
		}
	}
	return func(id uint32) bool { return len(tables[id]) <= 1 }
}

// pids lists every PID and TID of the tree.
func (t *treeImages) pids() map[int]bool {
	out := map[int]bool{}
	for _, p := range t.tasks {
		for _, th := range p.threads {
			out[th.tid] = true
		}
	}
	return out
}

// process is a restored process waiting to be released.
type process struct {
	t       *taskImages
	plan    *planned
	threads []*compel.Task // the leader first, as t.threads
}

// procPid is the PID in amber's pid namespace of pid, a process of the
// images made already.
func (r *restorer) procPid(pid int) int {
	if host, ok := r.hostPids[pid]; ok {
		return host
	}
	return pid
}

func (r *restorer) holder(id uint32) (files.Holder, bool) {
	h, ok := r.holders[id]
	return h, ok
}

func (r *restorer) memfdHolder(ino uint32) (files.Holder, bool) {
	h, ok := r.memfdHolders[ino]
	return h, ok
}

// restoreProcess makes task, just forked, into process t: it runs the
// main section, creates the threads and forks the children.
func (r *restorer) restoreProcess(task *compel.Task, insn uint64, t *taskImages, o *origin) error {
	var err error
	r.hostPids[t.pid] = task.Pid
	if err := r.cg.Move(task.Pid, cgSet(t.core), r.tree.parentCgSet(t)); err != nil {
		return err
	}
	// Only where the new task's mappings lie matters: maps, not smaps.
	if o.current, err = proc.ReadMaps(task.Pid); err != nil {
		return err
	}
	// Its files resolve in its mount namespace.
	treeStat := r.host.stat
	r.host.stat = r.statIn(t.ids.GetMntNsId())
	p, err := planTask(t, r.host, o)
	if err == nil {
		r.temporaries = append(r.temporaries, p.prog.Temporaries...)
	}
	r.host.stat = treeStat
	if err != nil {
		return fmt.Errorf("pid %d: %w", t.pid, err)
	}
	r.opts.Log.Infof("pid %d: planned %d calls", t.pid, len(p.prog.Calls))
	for _, w := range p.warnings {
		r.opts.Log.Warnf("pid %d: %s", t.pid, w)
	}
	if r.opts.Log.Enabled(log.LevelDebug) {
		r.opts.Log.Debugf("pid %d: plan of %d calls, scratch %#x+%#x:\n%s", t.pid, len(p.prog.Calls), p.prog.Base, p.prog.Size, p.prog)
	}
	if err := loadProgram(task, insn, p.prog); err != nil {
		return fmt.Errorf("pid %d: %w", t.pid, err)
	}
	if err := r.runMain(task, p.prog, t); err != nil {
		return fmt.Errorf("pid %d: %w", t.pid, err)
	}
	r.opts.Log.Infof("pid %d: memory, files and process state in place (%d calls)", t.pid, len(p.prog.Calls))
	if p.fds != nil {
		for id, fd := range p.fds.Held {
			if _, ok := r.holders[id]; !ok {
				// Tasks of the tree take it with pidfd_open, by the
				// PID they see: the images'.
				r.holders[id] = files.Holder{Pid: t.pid, Fd: fd}
			}
		}
	}
	for ino, fd := range p.memfds.Held() {
		if _, ok := r.memfdHolders[ino]; !ok {
			// Tasks open it as /proc/PID/fd/N, through amber's /proc:
			// by amber's PID of the holder.
			r.memfdHolders[ino] = files.Holder{Pid: task.Pid, Fd: fd}
		}
	}
	proc := &process{t: t, plan: p, threads: []*compel.Task{task}}
	r.procs = append(r.procs, proc)
	if err := r.createThreads(proc); err != nil {
		return err
	}
	m := maker{task: task, src: proc}
	r.makers[t.node] = m
	return r.forkAll(m, t.node, func() error { return runSessionStep(task, p.prog) })
}

// runSessionStep runs the session section of a process's program, if it
// has one (planSession).
func runSessionStep(task *compel.Task, prog *plan.Program) error {
	if sec, ok := prog.Section(sectionSession); !ok || sec.End == sec.Start {
		return nil
	}
	return runSection(task, prog, sectionSession, nil) // setsid and setpgid only: none of amber's
}

// releaseAll lets every restored task run.
func (r *restorer) releaseAll() error {
	for _, p := range r.procs {
		if err := stopAgain(p); err != nil {
			return err
		}
		for i, th := range p.threads {
			if err := th.SetAffinity(r.cpus); err != nil {
				return err
			}
			// The mask once more: a signal that came while amber drove
			// the thread was kept pending by blocking it.
			if err := th.SetSigMask(p.t.threads[i].core.GetThreadCore().GetBlkSigset()); err != nil {
				return err
			}
			if err := th.Detach(); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeTemporaries removes, once the tasks are killed, what their plans
// made to remove again (ghosts, the directories made for them), last
// made first, as the tree sees it (its root): a failed restore leaves
// none of it behind. What is not there was not made yet, or removed
// already; what cannot be removed is logged.
func (r *restorer) removeTemporaries() {
	for _, p := range slices.Backward(r.temporaries) {
		if _, err := r.host.root.Lstat(p); err != nil {
			continue
		}
		if err := r.host.root.Remove(p); err != nil {
			r.opts.Log.Errorf("remove %s, made for the failed restore: %v", p, err)
			continue
		}
		r.opts.Log.Infof("removed %s, made for the failed restore", p)
	}
}

// killAll kills every task created so far. amber becomes a subreaper
// first, so that children orphaned by the kill come back to it to be
// reaped instead of holding their PIDs as zombies. It reaps those tasks
// only: the caller may have children of its own that outlive the
// restore (amber receive's guard), for which a wait on any child would
// block forever.
//
// A task is gone once its PID is free, not once a wait returned it: a
// task amber traces but did not fork is waited for by amber as its
// tracer first, and then stays a zombie of its parent (amber, once the
// parent died too) until waited for again. Counted gone at the first
// wait, it kept its PID after amber had exited, and a restore tried
// again at once found it in use (CI at 1a20364).
func (r *restorer) killAll() {
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	left := map[int]bool{}
	for _, t := range r.created {
		unix.Kill(t.Pid, unix.SIGKILL)
		left[t.Pid] = true
	}
	deadline := time.Now().Add(compel.DefaultTimeout)
	for len(left) > 0 {
		for pid := range left {
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, unix.WALL|unix.WNOHANG, nil)
			if unix.Kill(pid, 0) == unix.ESRCH {
				delete(left, pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
}

// makeGhosts makes the unlinked files that the tree maps, or that were
// on a read-only mount, again, before any task runs its plan
// (files.PlanHostGhosts), in the tree's root (h.root), and tells h where
// they are.
func makeGhosts(tree *treeImages, h *host) (*files.HostGhosts, error) {
	t := tree.root
	ids, err := files.ReadOnlyGhosts(t.files, t.extra, h.root)
	if err != nil {
		return nil, err
	}
	for _, t := range tree.tasks {
		ids = append(ids, mem.MappedFiles(t.mm.GetVmas())...)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	gs, err := files.PlanHostGhosts(t.files, t.extra, ids, h.stat)
	if err != nil {
		return nil, err
	}
	h.ghosts = files.HostPaths(gs)
	return files.MakeHostGhosts(h.root, gs, h.users)
}

// checkPidsFree names the first PID or TID of the tree, or of a helper of
// its plan, already in use.
func checkPidsFree(tree *treeImages) error {
	pids := tree.plan.Pids()
	for _, t := range tree.tasks {
		for _, th := range t.threads {
			pids[th.tid] = true
		}
	}
	for _, pid := range slices.Sorted(maps.Keys(pids)) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			return fmt.Errorf("pid %d is in use by %s", pid, describePid(pid))
		}
	}
	return nil
}

func forkError(pid int, err error) error {
	if errors.Is(err, compel.ErrPidInUse) {
		return fmt.Errorf("pid %d is in use by %s", pid, describePid(pid))
	}
	return err
}

func newHost(opts Options) (*host, error) {
	lims, err := rlimit.Current()
	if err != nil {
		return nil, err
	}
	oomFloor, err := taskattr.OOMFloor()
	if err != nil {
		return nil, err
	}
	loginuid, err := taskattr.ReadLoginuid(0)
	if err != nil {
		return nil, err
	}
	inherit, err := inheritFds(opts)
	if err != nil {
		return nil, err
	}
	kernelVdso, err := mem.KernelVdso()
	if err != nil {
		return nil, err
	}
	return &host{
		inherit:    inherit,
		limits:     lims,
		oomFloor:   oomFloor,
		loginuid:   loginuid,
		amberPid:   os.Getpid(),
		workers:    min(runtime.NumCPU(), maxFillWorkers),
		populate:   kerndat.ProbePopulateWrite().Present,
		timerIDs:   kerndat.ProbeTimerIDs().Present,
		kernelVdso: kernelVdso,
		shellJob:   opts.ShellJob,
		stat:       os.Stat,
		// Files changed since the dump are taken as they are now.
		skipFileCheck:  opts.SkipFileCheck,
		tcpEstablished: opts.TCPEstablished,
		tcpClose:       opts.TCPClose,
		lazy:           opts.LazyPages,
		extUnixSk:      opts.ExtUnixSk,
		warnf:          opts.Log.Warnf,
	}, nil
}

// inheritFds checks that each descriptor of opts.InheritFds is open in
// amber, as CRIU does, and indexes them by key; of two with one key the
// first counts, as in CRIU.
func inheritFds(opts Options) (map[string]int, error) {
	out := map[string]int{}
	for _, in := range opts.InheritFds {
		var st unix.Stat_t
		if err := unix.Fstat(in.Fd, &st); err != nil {
			return nil, fmt.Errorf("inherit fd[%d]:%s: amber's fd %d: %w", in.Fd, in.Key, in.Fd, err)
		}
		if _, dup := out[in.Key]; !dup {
			out[in.Key] = in.Fd
			opts.Log.Infof("file %s will be restored from amber's fd %d", in.Key, in.Fd)
		}
	}
	return out, nil
}

// describePid names the process holding pid, for an error message.
func describePid(pid int) string {
	st, err := proc.ReadStatus(pid)
	if err != nil {
		return "another process or thread"
	}
	if st.Tgid != pid {
		return fmt.Sprintf("a thread of %s (pid %d)", st.Name, st.Tgid)
	}
	return fmt.Sprintf("%s (pid %d)", st.Name, pid)
}

// removeLinkRemaps removes the links the dump made for files removed
// from their paths (files.LinkRemaps), once every task holds its files:
// until then they stay, so that a failed restore can be tried again. A
// link that cannot be removed is only logged: the tree runs as it should.
func (r *restorer) removeLinkRemaps(tree *treeImages) {
	for _, p := range files.LinkRemaps(tree.root.files, tree.root.extra) {
		if err := r.host.root.Remove(p); err != nil {
			r.opts.Log.Errorf("remove the link made by the dump (--link-remap): %v", err)
		}
	}
}
