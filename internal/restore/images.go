package restore

import (
	"fmt"
	"os"
	"time"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	fsimg "github.com/checkpoint-restore/go-criu/v8/crit/images/fs"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"google.golang.org/protobuf/proto"

	"amber/internal/files"
	"amber/internal/image"
	"amber/internal/log"
	"amber/internal/mem"
	"amber/internal/netfilter"
	ptree "amber/internal/pstree"
	"amber/internal/seccomp"
)

// imagesVersion is the only img_version amber reads.
const imagesVersion = 2

// taskImages are the images of one process, read and checked.
type taskImages struct {
	pid       int
	tree      *pstree.PstreeEntry
	core      *criucore.CoreEntry // the leader's
	threads   []threadImages      // every thread, the leader first
	ids       *criucore.TaskKobjIdsEntry
	parent    *taskImages
	children  []*taskImages
	cow       []mem.Run // pages shared with the parent at dump
	mm        *mm.MmEntry
	guards    []mem.Run // guard pages, recorded in mm.img after the VMAs
	pagemap   []*pagemap.PagemapEntry
	pagesPath image.Path
	// layers are the task's pagemaps in the parent images of an
	// incremental dump, nearest first, as far as its pagemap needs them.
	layers    []layer
	fds       []*fdinfo.FdinfoEntry
	fs        *fsimg.FsEntry
	files     files.Index
	pipes     map[uint32][]byte
	pipeSizes map[uint32]uint32
	extra     *files.Extra  // FIFO data, socket queues, ghosts, file times
	shared    *sharedImages // the tree's shared memory objects
	seccomp   seccomp.Process
	// oddThreads: pstree.img's threads did not start with the leader,
	// which only a zombie may do (CRIU's).
	oddThreads bool
	// node is the process in the plan of the tree: who forks it, what it
	// forks, its session step.
	node *ptree.Node
}

func newOf[T any]() func() *T { return func() *T { return new(T) } }

// threadImages is one thread's core image.
type threadImages struct {
	tid  int
	core *criucore.CoreEntry
	// restart is the kernel's restart code the thread was dumped with
	// inside an interrupted call (image.ReadRestarts), 0 if none.
	restart uint64
}

// treeImages is a whole dumped tree, parents before children.
type treeImages struct {
	dir   image.Dir // where the images are
	root  *taskImages
	tasks []*taskImages
	// rootIDs are the dumper's own ids (the inventory's root_ids): the
	// root's namespaces that differ from them are made anew.
	rootIDs *criucore.TaskKobjIdsEntry
	// rootCgSet is the dumper's own cgroup set (the inventory's
	// root_cg_set): processes in it stay in the restorer's cgroups.
	rootCgSet uint32
	// stat looks up the files of the images, stat-ed ahead while the
	// rest of them is read (nil: os.Stat).
	stat func(string) (os.FileInfo, error)
	// pagesCheck is the check of the pages images against the manifest,
	// still running while memory is filled (nil: no manifest).
	pagesCheck *image.Check
	// parents are the parent images directories opened, nearest first,
	// and the checks of their pages images against their manifests,
	// still running while memory is filled (parentChecks; nil where a
	// directory has no manifest). lazy: the restore is lazy, and the
	// lazy-pages daemon reads the parents' pages unchecked, so their
	// checks end before anything is restored.
	parents      []image.Dir
	parentChecks []*image.Check
	lazy         bool
	// locks are the file locks of filelocks.img, by owner.
	locks files.Locks
	// netLock is how the dump locked the network (the inventory's
	// network_lock_method), lifted once every task is restored, and
	// netLockID its run id (dump_criu_run_id), the lock's name.
	netLock   netfilter.Method
	netLockID string
	// plan is how the tree is made: who forks whom, helpers, and the
	// calls that give every process its session and group.
	plan *ptree.Plan
	// byPid are the processes by PID.
	byPid map[int]*taskImages
}

// verifyImages checks the images in dir against their manifest before
// the restore reads them: every image but the pages at once, and those
// (the bulk of the bytes) in the background, while the tasks are made and
// their memory filled from the same page cache; the returned Check says
// how that went. Images without a manifest (CRIU's) are not checked. A
// lazy restore checks only the pieces of the pages images it reads
// itself, once its tasks are made (waitPagesCheck), where the manifest
// has piece sums: the lazy-pages daemon checks the others before it
// places a page from them.
func verifyImages(dir image.Dir, lazy bool, l *log.Logger) (*image.Check, error) {
	verify := image.VerifyManifest
	if lazy {
		verify = image.VerifyManifestLazy
	}
	check, err := verify(dir, image.IsPagesName)
	if err != nil {
		return nil, err
	}
	if check == nil {
		l.Infof("no %s: images not checked", image.ManifestName)
		return nil, nil
	}
	l.Infof("%d image files listed in %s: all there, all but the pages images checked; those are checked while memory is filled",
		len(check.Manifest.Files), image.ManifestName)
	return check, nil
}

// waitPagesCheck waits for the check of the pages images, once every
// task's memory is filled from them: of a lazy restore's, the pieces
// not wholly in lazy (by image name, the bytes left to the daemon).
func (t *treeImages) waitPagesCheck(lazy map[string][]image.Span, l *log.Logger) error {
	if t.pagesCheck == nil && len(t.parentChecks) == 0 {
		return nil
	}
	start := time.Now()
	if err := t.pagesCheck.WaitPieces(lazy); err != nil {
		return err
	}
	for _, c := range t.parentChecks {
		if err := c.Wait(); err != nil {
			return err
		}
	}
	l.Infof("pages images match %s (waited %v for the check)", image.ManifestName, time.Since(start).Round(time.Microsecond))
	return nil
}

// load reads the images of the tree in dir and plans how the tree is
// made (shellJob: the root stays in amber's session, --shell-job; lazy:
// a lazy restore).
func load(dir image.Dir, shellJob, lazy bool) (*treeImages, error) {
	inv, err := image.ReadOne(dir.InventoryPath(), image.Inventory, newOf[inventory.InventoryEntry]())
	if err != nil {
		return nil, err
	}
	if v := inv.GetImgVersion(); v != imagesVersion {
		return nil, fmt.Errorf("%s: img_version %d, amber reads %d", dir.InventoryPath(), v, imagesVersion)
	}
	entries, err := image.ReadFile(dir.PstreePath(), image.Pstree, newOf[pstree.PstreeEntry]())
	if err != nil {
		return nil, err
	}
	tree, err := linkTree(dir.PstreePath().String(), entries)
	if err != nil {
		return nil, err
	}
	idx, err := files.ReadIndex(dir)
	if err != nil {
		return nil, err
	}
	tree.dir, tree.rootIDs, tree.rootCgSet, tree.lazy = dir, inv.GetRootIds(), inv.GetRootCgSet(), lazy
	tree.netLock, tree.netLockID = netLockOf(inv)
	tree.stat = idx.StatAhead(os.Stat)
	pipes, pipeSizes, err := files.ReadPipesData(dir)
	if err != nil {
		return nil, err
	}
	extra, err := files.ReadExtra(dir, idx)
	if err != nil {
		return nil, err
	}
	if err := files.ResolveInotifyPaths(idx, extra); err != nil {
		return nil, err
	}
	filters, err := seccomp.Load(dir.SeccompPath())
	if err != nil {
		return nil, err
	}
	restarts, err := image.ReadRestarts(dir)
	if err != nil {
		return nil, err
	}
	if tree.locks, err = files.ReadLocks(dir); err != nil {
		return nil, err
	}
	for _, t := range tree.tasks {
		t.files, t.pipes, t.pipeSizes, t.extra = idx, pipes, pipeSizes, extra
		if err := t.load(dir, filters); err != nil {
			return nil, err
		}
		for i := range t.threads {
			t.threads[i].restart = restarts[t.threads[i].tid]
		}
	}
	if err := tree.planTree(shellJob); err != nil {
		return nil, err
	}
	if err := tree.loadLayers(); err != nil {
		tree.closeParents()
		return nil, err
	}
	shared, err := loadShared(dir, tree)
	if err != nil {
		tree.closeParents()
		return nil, err
	}
	for _, t := range tree.tasks {
		t.shared = shared
	}
	return tree, nil
}

// linkTree checks pstree.img and links parents and children.
func linkTree(path string, entries []*pstree.PstreeEntry) (*treeImages, error) {
	if len(entries) == 0 {
		return nil, fmt.Errorf("%s: no process", path)
	}
	byPid := map[int]*taskImages{}
	tree := &treeImages{byPid: byPid}
	for i, e := range entries {
		t := &taskImages{tree: e, pid: int(e.GetPid())}
		if t.pid <= 0 || byPid[t.pid] != nil {
			return nil, fmt.Errorf("%s: entry %d: invalid or repeated pid %d", path, i, t.pid)
		}
		if th := e.GetThreads(); len(th) == 0 || int(th[0]) != t.pid {
			// Only a zombie may: CRIU 4.2 writes a zombie's one thread
			// uninitialized. Its core image is core-PID, which must
			// say it is dead (t.load).
			e.Threads, t.oddThreads = []uint32{uint32(t.pid)}, true
		}
		byPid[t.pid] = t
		if i == 0 {
			tree.root = t
		} else if t.parent = byPid[int(e.GetPpid())]; t.parent == nil {
			return nil, fmt.Errorf("%s: pid %d: parent %d is not listed before it", path, t.pid, e.GetPpid())
		} else {
			t.parent.children = append(t.parent.children, t)
		}
		tree.tasks = append(tree.tasks, t)
	}
	return tree, nil
}

// planTree plans how the tree is made (package pstree): the root is the
// init of a pid namespace of its own when its PID is 1 (newNamespaces).
func (tree *treeImages) planTree(shellJob bool) error {
	entries := make([]ptree.Entry, len(tree.tasks))
	for i, t := range tree.tasks {
		e := t.tree
		entries[i] = ptree.Entry{Pid: t.pid, Ppid: int(e.GetPpid()), Pgid: int(e.GetPgid()), Sid: int(e.GetSid()),
			Zombie: t.zombie(), Subreaper: t.core.GetTc().GetChildSubreaper()}
	}
	plan, err := ptree.Build(entries, ptree.Options{Init: tree.root.pid == 1, ShellJob: shellJob, DeadPids: tree.root.extra.DeadPids()})
	if err != nil {
		return fmt.Errorf("%s: %w", tree.dir.PstreePath(), err)
	}
	tree.plan = plan
	for _, t := range tree.tasks {
		t.node = plan.Node(t.pid)
	}
	return nil
}

// load reads the images of one process.
func (t *taskImages) load(dir image.Dir, filters *seccomp.Filters) error {
	if err := t.loadCore(dir); err != nil {
		return err
	}
	if t.zombie() {
		return nil
	}
	if t.oddThreads {
		return fmt.Errorf("%s: pid %d: threads must start with the leader", dir.PstreePath(), t.pid)
	}
	if err := t.loadSeccomp(filters); err != nil {
		return err
	}
	if err := t.loadMemory(dir); err != nil {
		return err
	}
	return t.loadFiles(dir)
}

// loadSeccomp reads what each thread installs of seccomp.
func (t *taskImages) loadSeccomp(filters *seccomp.Filters) error {
	tids := make([]int, len(t.threads))
	cores := make([]*criucore.ThreadCoreEntry, len(t.threads))
	for i, th := range t.threads {
		tids[i], cores[i] = th.tid, th.core.GetThreadCore()
	}
	var err error
	if t.seccomp, err = filters.ForProcess(tids, cores); err != nil {
		return fmt.Errorf("pid %d: seccomp: %w", t.pid, err)
	}
	return nil
}

// threadMasks puts each thread's signal mask in its thread_core, where
// planning reads it. CRIU writes the leader's in tc only (its restore
// takes the leader's from there, even beside one in thread_core), and
// another thread's in thread_core, or none: that thread then gets the
// leader's. amber writes both, equal.
func (t *taskImages) threadMasks() {
	tc := t.core.GetTc()
	if tc == nil || tc.BlkSigset == nil {
		return
	}
	for i, th := range t.threads {
		core := th.core.GetThreadCore()
		if core != nil && (i == 0 || core.BlkSigset == nil) {
			core.BlkSigset = proto.Uint64(tc.GetBlkSigset())
		}
	}
}

// zombie reports whether the process had exited but was not reaped.
func (t *taskImages) zombie() bool { return t.core.GetTc().GetTaskState() == taskDead }

// fdOfFile returns a descriptor of the process that holds file id.
func (t *taskImages) fdOfFile(id uint32) (int, bool) {
	for _, f := range t.fds {
		if f.GetId() == id {
			return int(f.GetFd()), true
		}
	}
	return 0, false
}

func (t *taskImages) loadCore(dir image.Dir) error {
	for i, tid := range t.tree.GetThreads() {
		core, err := readCore(dir, int(tid), i == 0)
		if err != nil {
			return err
		}
		t.threads = append(t.threads, threadImages{tid: int(tid), core: core})
	}
	t.core = t.threads[0].core
	if s := t.core.GetTc().GetTaskState(); s != taskAlive && s != taskDead && s != taskStopped {
		return fmt.Errorf("%s: task state %d is not supported yet", dir.CorePath(t.pid), s)
	}
	t.threadMasks()
	if t.zombie() && len(t.threads) != 1 {
		return fmt.Errorf("%s: a zombie with %d threads", dir.CorePath(t.pid), len(t.threads))
	}
	ids, err := image.ReadOne(dir.IDsPath(t.pid), image.IDs, newOf[criucore.TaskKobjIdsEntry]())
	if err != nil && !(os.IsNotExist(err) && t.zombie()) {
		return err
	}
	t.ids = ids
	if t.ids == nil {
		t.ids = t.core.GetIds()
	}
	return nil
}

func readCore(dir image.Dir, tid int, leader bool) (*criucore.CoreEntry, error) {
	path := dir.CorePath(tid)
	core, err := image.ReadOne(path, image.Core, newOf[criucore.CoreEntry]())
	if err != nil {
		return nil, err
	}
	if a := core.GetMtype(); a != criucore.CoreEntry_X86_64 {
		return nil, fmt.Errorf("%s: images of architecture %v; amber restores x86_64", path, a)
	}
	if leader && core.GetTc() == nil {
		return nil, fmt.Errorf("%s: tc is required for a process", path)
	}
	if leader && core.GetTc().GetTaskState() == taskDead {
		return core, nil
	}
	if core.GetThreadInfo() == nil || core.GetThreadCore() == nil {
		return nil, fmt.Errorf("%s: thread_info and thread_core are required", path)
	}
	if core.GetThreadInfo().GetGpregs() == nil || core.GetThreadInfo().GetFpregs() == nil {
		return nil, fmt.Errorf("%s: registers missing", path)
	}
	return core, nil
}

// Task states of CRIU's images (compel's task-state.h).
const (
	taskAlive   = 1
	taskDead    = 2
	taskStopped = 3 // stopped for its job control (SIGSTOP and the like)
)

func (t *taskImages) loadMemory(dir image.Dir) error {
	var err error
	if t.mm, err = mem.ReadMM(dir.MMPath(t.pid)); err != nil {
		return err
	}
	t.mm.Vmas, t.guards = mem.SplitGuards(t.mm.Vmas)
	path := dir.PagemapPath(t.pid)
	head, entries, err := mem.ReadPagemap(path)
	if err != nil {
		return err
	}
	t.pagemap = entries
	t.pagesPath, err = pagesOf(dir, path, head, entries)
	return err
}

// pagesOf is the pages image a pagemap (at path, with head and entries)
// names, checked to hold as many pages as the pagemap lists.
func pagesOf(dir image.Dir, path image.Path, head *pagemap.PagemapHead, entries []*pagemap.PagemapEntry) (image.Path, error) {
	var pages uint64
	for _, e := range entries {
		if e.GetFlags()&mem.PEPresent != 0 {
			pages += mem.NrPages(e)
		}
	}
	p := dir.PagesPath(head.GetPagesId())
	st, err := p.Stat()
	if err != nil {
		return p, err
	}
	if uint64(st.Size()) != pages*4096 {
		return p, fmt.Errorf("%s: %d bytes, but %s lists %d pages: truncated or mismatched images", p, st.Size(), path, pages)
	}
	return p, nil
}

func (t *taskImages) loadFiles(dir image.Dir) error {
	var err error
	if t.fds, err = image.ReadFile(dir.FdinfoPath(t.ids.GetFilesId()), image.Fdinfo, newOf[fdinfo.FdinfoEntry]()); err != nil {
		return err
	}
	if t.fs, err = image.ReadOne(dir.FSPath(t.pid), image.FS, newOf[fsimg.FsEntry]()); err != nil {
		return err
	}
	t.cow, err = mem.ReadCow(dir, t.pid)
	return err
}

// locksToTake returns the file locks the processes take again, checked
// against the tree: none unless --file-locks (withLocks), which images
// holding locks need.
func (t *treeImages) locksToTake(withLocks bool) (files.Locks, error) {
	n := t.locks.Len()
	if n == 0 {
		return nil, nil
	}
	if !withLocks {
		return nil, fmt.Errorf("%s: the tree held %d file locks: restore with --file-locks to take them again", t.dir.FileLocksPath(), n)
	}
	live := map[int]bool{}
	for _, p := range t.tasks {
		if !p.zombie() {
			live[p.pid] = true
		}
	}
	for pid := range t.locks {
		if !live[pid] {
			return nil, fmt.Errorf("%s: a lock of pid %d, which is no live process of the tree", t.dir.FileLocksPath(), pid)
		}
	}
	return t.locks, nil
}
