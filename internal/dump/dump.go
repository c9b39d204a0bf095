// Package dump checkpoints a running process tree into an images
// directory. Run reads like CRIU's cr_dump_tasks: freeze the tree, collect
// each kind of state of each process and thread, write the images, then
// kill or release the tree. A dump that fails leaves the tree running as
// it was.
package dump

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"runtime"
	"time"

	"amber/internal/cgroups"
	"amber/internal/compel"
	"amber/internal/cpu"
	"amber/internal/files"
	"amber/internal/idmap"
	"amber/internal/image"
	"amber/internal/kerndat"
	"amber/internal/log"
	"amber/internal/mem"
	"amber/internal/namespaces"
	"amber/internal/netfilter"
	"amber/internal/pageserver"
	"amber/internal/proc"
	"amber/internal/seccomp"
)

// Options are the dump settings of CRIU's command line.
type Options struct {
	Pid            int    // -t, --tree: root of the tree to dump
	ImagesDir      string // -D, --images-dir
	LeaveRunning   bool   // -R, --leave-running
	ShellJob       bool   // -j, --shell-job
	GhostLimit     int64  // --ghost-limit: largest unlinked file kept (files.DefaultGhostLimit unless set)
	TCPEstablished bool   // --tcp-established: dump established TCP connections
	TCPClose       bool   // --tcp-close: dump TCP connections without their state
	FileLocks      bool   // --file-locks: dump the file locks the tree holds
	LinkRemap      bool   // --link-remap: link back files removed from their path but linked elsewhere
	// NetworkLock is how the tree's network is locked while it is
	// dumped (--network-lock; netfilter.IPTables, CRIU's default, if not
	// given), and NetworkLockSet whether it was chosen.
	NetworkLock    netfilter.Method
	NetworkLockSet bool
	// TCPSkipInFlight leaves out connections waiting to be accepted
	// (--tcp-skip-in-flight); without it their listener is refused.
	TCPSkipInFlight bool
	// ExtMounts marks mounts of the tree's mount namespace as external
	// (--external mnt[MOUNTPOINT]:KEY): mountpoint to key.
	ExtMounts map[string]string
	ExtUnixSk bool // --ext-unix-sk: dump connections to datagram sockets outside the tree
	// PreDump copies the memory only and lets the tree run on (CRIU's
	// pre-dump).
	PreDump bool
	// PrevImagesDir is the images of the dump before (--prev-images-dir),
	// relative to ImagesDir unless absolute: the new images link to them
	// as their parent.
	PrevImagesDir string
	// TrackMem tracks the pages the tree writes from this dump on, and
	// leaves those unwritten since the dump before to its images
	// (--track-mem).
	TrackMem bool
	// FreezeCgroup is a freezer cgroup (v1) or cgroup (v2) holding the
	// tree, frozen while amber seizes the tree's tasks instead of
	// interrupting them one after the other (--freeze-cgroup); "" for
	// none.
	FreezeCgroup string
	// EmptyNet leaves the tree's network namespace, if not amber's,
	// undumped, for the restore to make a new one that the container
	// engine sets up (--empty-ns net, runc's empty_ns).
	EmptyNet bool
	// OrphanPtsMaster dumps a pty slave of the tree whose master is
	// outside it (RPC orphan_pts_master): a container's terminal, whose
	// master the engine handed to its --console-socket. The restore makes
	// a new pty and hands its master to the client.
	OrphanPtsMaster bool
	// StatsDir is where stats-dump is written once the dump is done,
	// CRIU's work directory ("": nowhere).
	StatsDir string
	// ExtNet is the network namespace left outside the dump (--external
	// net[INO]:KEY): if the tree's, only its key is dumped.
	ExtNet namespaces.ExtNet
	// ManageCgroups is --manage-cgroups: the dump saves the tree's
	// cgroups (cgroup.img) unless it is cgroups.Ignore.
	ManageCgroups cgroups.Mode
	// CgroupYard is --cgroup-yard: a directory where the caller has
	// mounted every hierarchy, used in place of amber's own mounts.
	CgroupYard string
	// PageServer is the address (host:port) of the page server that
	// receives the pages instead of the images directory (--page-server
	// --address --port); "" for none.
	PageServer string
	// PageServerConn, if set, is a connection to the page server made
	// already (CRIU's ps.fd, --ps-socket), used in place of PageServer;
	// the dump closes a copy of it, not it: the caller may send the next
	// dump's pages on it.
	PageServerConn *os.File
	// LazyPages is where a dump --lazy-pages serves the pages it leaves
	// out of the images (host:port, --address --port), "" for a dump
	// that is not lazy. The tree stays frozen until a lazy-pages daemon
	// had them all.
	LazyPages string
	// LazyReady, if set, is called once every image is written and the
	// lazy pages are served (--status-fd).
	LazyReady func() error
	// LazyDial, if set, makes the dump lazy as LazyPages does, but the
	// lazy pages are served on the connection it returns, called once
	// every image is written, instead of on a listening socket: amber
	// migrate's source connects to the destination, which asks for pages
	// over it. It may be used with PageServer.
	LazyDial func() (net.Conn, error)
	// Fault, if set, is called at named points for fault tests:
	// "lazy-half" once half the lazy pages are sent.
	Fault func(point string)
	// Timeout bounds each wait for a task of the tree (--timeout);
	// compel.DefaultTimeout if zero.
	Timeout time.Duration
	Log     *log.Logger
	// Notify, if set, is called at CRIU's action-script points, by
	// CRIU's names: "pre-dump" before the tree is frozen,
	// "query-ext-files" once it is, "post-dump" when every image is
	// written, before the tree is killed or released. An error ends the
	// dump and the tree runs on. "network-lock" comes before the
	// network namespace of a tree that has one of its own is locked.
	Notify func(action string) error
	// Layouts, if set, carries the layouts each dump read from smaps to
	// the next dump of the chain, which reuses them where maps shows no
	// change unless it is a pre-dump (layout.go); the caller runs
	// Layouts.Check before it hands the tree over.
	Layouts *Layouts
	// Freezing, if set, is called right before the tree is seized: the
	// last moment it surely ran (amber migrate's downtime starts there,
	// not at the "pre-dump" notification, which comes before the dump
	// opens the images it builds on).
	Freezing func()
}

// dumper carries one dump's settings and collected state.
type dumper struct {
	opts   Options
	dir    image.Dir
	log    *log.Logger
	files  *files.Table
	fds    *files.Dumper
	tables map[uint32]bool // descriptor tables (files_id) written
	shm    *sharedMemory   // shared memory objects, dumped once at the end
	// shmemDev is the device of the kernel's internal shmem mount.
	shmemDev uint64
	// shmemMemfd tells the objects of anonymous shared memory dumped as
	// memfds (privateShmem), by inode number.
	shmemMemfd func(ino uint64) bool
	// xsave is this CPU's XSAVE layout, probed once: CPUID costs a VM
	// exit.
	xsave cpu.Layout
	// sums are the checksums of the pages images, computed as they were
	// written, for the manifest.
	sums map[string]image.ManifestFile
	// seccomp collects the seccomp filters of every thread.
	seccomp *seccomp.Table
	// restarts are the kernel's restart codes of the threads frozen in
	// an interrupted call, by TID (image.WriteRestarts).
	restarts map[int]uint64
	// runs are the pages with data of each process, by PID.
	runs map[int][]mem.Run
	// prev are the images of the dump before (--prev-images-dir), and
	// prevTrack their record of where each process's memory tracking is.
	prev      image.Dir
	prevTrack map[int]parked
	// tracks are the memory tracking of each process, nil where it has
	// none.
	tracks map[int]*tracking
	// strays are the copies of their parents' tracking that processes
	// inherited by fork, by PID: descriptors to hide.
	strays map[int]int
	// pids translates PIDs into the tree's own pid namespace's, nil if
	// the images hold amber's.
	pids *pidMap
	// users are the maps of the tree's own user namespace, nil if it
	// is in amber's: the images hold ids as the namespace sees them.
	users *idmap.Pair
	// marker is how /proc/PID/pagemap shows a uffd-wp marker
	// (mem.ProbeMarker), probed before the freeze of a dump that tracks
	// memory.
	marker uint64
	// softDirty: the kernel has no asynchronous userfaultfd write
	// protection, and the dump tracks memory by soft-dirty bits.
	softDirty bool
	// cg collects the cgroups of the tree, nil with
	// --manage-cgroups=ignore.
	cg *cgroups.Dumper
	// ps is the connection to the page server, nil without one.
	ps *pageserver.Client
	// lazyLn is where a lazy dump serves its lazy pages (nil for one
	// served on LazyDial's connection), and lazy are those pages, by PID
	// in the images; nil for a dump that is not lazy.
	lazyLn net.Listener
	lazy   lazySources
	// stats are the figures of stats-dump.
	stats dumpStats
	// net is the network lock (netlock.go).
	net netLock
}

// Run dumps the tree rooted at opts.Pid.
func Run(opts Options) error {
	if opts.Log == nil {
		opts.Log = log.Discard()
	}
	if opts.Timeout == 0 {
		opts.Timeout = compel.DefaultTimeout
	}
	t := files.NewTable()
	defer t.Close()
	shmemDev, err := kerndat.ShmemDev()
	if err != nil {
		opts.Log.Warnf("%v: shared memory cannot be dumped", err)
	}
	dir, err := image.OpenDir(opts.ImagesDir)
	if err != nil {
		return fmt.Errorf("dump pid %d: %w", opts.Pid, err)
	}
	defer dir.Close()
	d := &dumper{opts: opts, dir: dir, log: opts.Log, files: t, xsave: cpu.HostLayout(),
		fds: files.NewDumper(t, files.DumpOptions{ShellJob: opts.ShellJob, GhostLimit: opts.GhostLimit, ShmemDev: shmemDev,
			TCPEstablished: opts.TCPEstablished, TCPClose: opts.TCPClose, FileLocks: opts.FileLocks, LinkRemap: opts.LinkRemap, ExtUnixSk: opts.ExtUnixSk, Warnf: opts.Log.Warnf,
			TCPSkipInFlight: opts.TCPSkipInFlight,
			OrphanPtsMaster: opts.OrphanPtsMaster}),
		tables: map[uint32]bool{}, shm: newSharedMemory(), shmemDev: shmemDev, sums: map[string]image.ManifestFile{},
		seccomp: seccomp.NewTable(), restarts: map[int]uint64{},
		runs: map[int][]mem.Run{}, tracks: map[int]*tracking{}, strays: map[int]int{},
		net: netLock{lock: netfilter.Lock{RunID: newRunID()}, method: opts.NetworkLock}}
	if err := d.connectPageServer(); err != nil {
		return fmt.Errorf("dump pid %d: %w", opts.Pid, err)
	}
	defer d.abortPageServer()
	if err := d.listenLazy(); err != nil {
		return fmt.Errorf("dump pid %d: %w", opts.Pid, err)
	}
	defer d.closeLazy()
	if err := d.run(); err != nil {
		return fmt.Errorf("dump pid %d: %w", opts.Pid, err)
	}
	return nil
}

func (d *dumper) run() error {
	pid := d.opts.Pid
	if err := d.notify("pre-dump"); err != nil {
		return err
	}
	err := checkRoot(pid)
	if err != nil {
		return err
	}
	if d.opts.PrevImagesDir != "" {
		if d.prev, err = openPrev(d.dir.Resolved(), d.opts.PrevImagesDir); err != nil {
			return err
		}
		defer d.prev.Close()
		if d.prevTrack, err = readTrackRecord(d.prev); err != nil {
			return fmt.Errorf("--prev-images-dir: %w", err)
		}
	}
	if d.opts.TrackMem {
		// Probed before the freeze: the tree waits for none of it.
		if d.marker, err = mem.ProbeMarker(); err != nil {
			sd := kerndat.ProbeSoftDirty()
			if !errors.Is(err, mem.ErrNoWPAsync) || !sd.Present {
				return errors.Join(err, sd.Err)
			}
			d.softDirty = true
			d.log.Infof("Tracking memory by soft-dirty bits: %v", err)
		}
	}
	// ptrace binds a tracee to the thread that attached it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	d.log.Infof("Freezing the tree of pid %d", pid)
	orig, pinned, err := compel.Pin()
	if err != nil {
		return err
	}
	defer compel.Unpin(orig)
	if d.opts.Freezing != nil {
		d.opts.Freezing()
	}
	d.stats.freezeStart = time.Now()
	seized, err := d.seizeFrozen(pid)
	if err != nil {
		return err
	}
	tree, err := freezeTree(pid, d.log, pinned, d.opts.Timeout, seized)
	if err != nil {
		return err
	}
	d.log.Infof("Frozen %d processes", len(tree.procs))
	if l := d.opts.Layouts; l != nil {
		clear(l.reused)
		tree.layouts, tree.reuse = l, !d.opts.PreDump
	}
	d.stats.frozenAt = time.Now()
	if d.opts.PreDump {
		if err := d.preDumpTree(tree); err != nil {
			return errors.Join(err, d.endTracking(true), tree.release())
		}
		d.log.Infof("Releasing the tree (pre-dump)")
		err := errors.Join(d.endTracking(false), tree.release())
		// As CRIU's pre-dump: Podman exports a pre-checkpoint with it.
		d.writeStats()
		return err
	}
	if err := d.dumpFrozen(tree); err != nil {
		if terr := d.endTracking(true); terr != nil {
			d.log.Errorf("close the memory tracking after a failed dump: %v", terr)
		}
		if rerr := d.fds.ReleaseSockets(true); rerr != nil {
			d.log.Errorf("resume the TCP connections after a failed dump: %v", rerr)
		}
		if rerr := d.unlockNetwork(); rerr != nil {
			d.log.Errorf("after a failed dump: %v", rerr)
		}
		if rerr := d.fds.RemoveLinks(); rerr != nil {
			d.log.Errorf("after a failed dump: %v", rerr)
		}
		if rerr := tree.release(); rerr != nil {
			d.log.Errorf("release the tree after a failed dump: %v", rerr)
		}
		return err
	}
	if d.lazy != nil {
		if err := d.serveLazy(); err != nil {
			d.log.Errorf("%v: the tree runs on", err)
			return errors.Join(err, d.endTracking(false), d.fds.ReleaseSockets(true), d.unlockNetwork(), tree.release())
		}
	}
	if d.opts.LeaveRunning {
		d.log.Infof("Releasing the tree (--leave-running)")
		err := errors.Join(d.endTracking(false), d.fds.ReleaseSockets(true), d.unlockNetwork(), tree.release())
		d.writeStats()
		return err
	}
	if err := d.endTracking(false); err != nil {
		d.log.Warnf("memory tracking: %v", err)
	}
	d.log.Infof("Killing the tree")
	// TCP connections in repair mode die silently with the tree: amber's
	// copies of them are closed only once it is dead.
	err = tree.kill()
	d.writeStats()
	return errors.Join(err, d.fds.ReleaseSockets(false))
}

// dumpFrozen dumps the frozen tree between the notifications around it.
func (d *dumper) dumpFrozen(tree *frozenTree) error {
	if err := d.notify("query-ext-files"); err != nil {
		return err
	}
	if err := d.dumpTree(tree); err != nil {
		return err
	}
	return d.notify("post-dump")
}

// notify runs the Notify hook, if any, for action.
func (d *dumper) notify(action string) error {
	if d.opts.Notify == nil {
		return nil
	}
	d.log.Debugf("notify %s", action)
	if err := d.opts.Notify(action); err != nil {
		return fmt.Errorf("%s notification: %w", action, err)
	}
	return nil
}

// checkRoot refuses a root that cannot be dumped, before touching it.
func checkRoot(pid int) error {
	st, err := proc.ReadStatus(pid)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no process with pid %d", pid)
	}
	if err != nil {
		return err
	}
	if st.Tgid != pid {
		return fmt.Errorf("pid %d is a thread of process %d: dump the process", pid, st.Tgid)
	}
	if st.State == 'Z' {
		return fmt.Errorf("pid %d (%s) is a zombie", pid, st.Name)
	}
	if st.TracerPid != 0 {
		return fmt.Errorf("process %d (%s) is already traced by pid %d", pid, st.Name, st.TracerPid)
	}
	return notAmber(pid, st.Name)
}

// notAmber refuses a tree that holds amber itself: amber's own PID, or
// one of its ancestors (the shell that ran it), whose tree amber would
// have to freeze while it runs.
func notAmber(pid int, name string) error {
	self := os.Getpid()
	if pid == self {
		return fmt.Errorf("pid %d is amber itself: amber cannot dump its own process", pid)
	}
	for p := os.Getppid(); p > 0; {
		if p == pid {
			return fmt.Errorf("pid %d (%s) is an ancestor of amber (pid %d): its tree holds amber itself; "+
				"run amber from outside the tree to dump it", pid, name, self)
		}
		st, err := proc.ReadStatus(p)
		if err != nil {
			return nil // the chain changed under us: nothing more to find
		}
		p = st.PPid
	}
	return nil
}
