package dump

import (
	"fmt"
	"os"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/cgroups"
	"amber/internal/compel"
	"amber/internal/files"
	"amber/internal/image"
	"amber/internal/ipc"
	"amber/internal/mem"
	"amber/internal/mounts"
	"amber/internal/namespaces"
	"amber/internal/proc"
	"amber/internal/timers"
)

// imagesVersion is CRIU's img_version for images with per-id fdinfo.
const imagesVersion = 2

// dumpTree collects every process of the frozen tree and writes its
// images. Nothing in the tree changes.
func (d *dumper) dumpTree(tree *frozenTree) error {
	d.fds.ReadLocksAhead()
	if err := d.removeStale(); err != nil {
		return err
	}
	if err := d.linkParent(); err != nil {
		return err
	}
	ids := newKobjIDs()
	ns, err := d.namespaces(tree)
	if err != nil {
		return err
	}
	if err := d.lockNetns(ns, tree.procs[0].pid); err != nil {
		return err
	}
	d.fds.InTree = tree.hasTask
	if err := d.findPrivateShmem(tree); err != nil {
		return err
	}
	if id, ok := ns.Own(namespaces.IPC); ok {
		d.shm.ipcNS = &ipcNamespace{id: id, pid: tree.procs[0].pid}
	}
	if err := d.openCgroups(); err != nil {
		return err
	}
	defer d.cg.Close()
	if err := d.cgroupNamespace(ns, tree.procs[0].pid); err != nil {
		return err
	}
	// The inventory's root ids are the dumper's own, as CRIU writes them:
	// CRIU's restore compares the root task's with them (a namespace id
	// that differs is a namespace to create), and a root task sharing
	// the dumper's descriptor table is a corrupt image to it.
	rootIDs := ids.of(os.Getpid())
	proto.Merge(rootIDs, ns.Self())
	var entries []proto.Message
	mms := map[int]*mm.MmEntry{}
	for i, p := range tree.procs {
		entries = append(entries, pstreeEntry(p, d.pids))
		if p.zombie {
			if err := image.WriteFile(d.dir.CorePath(d.pids.of(p.pid)), image.Core, zombieCore(p)); err != nil {
				return err
			}
			continue
		}
		k := ids.of(p.pid)
		if err := ns.Fill(k, p.pid); err != nil {
			return err
		}
		if mms[p.pid], err = d.dumpProcess(tree, p, k, uint32(i+1), mms); err != nil {
			return fmt.Errorf("pid %d: %w", p.pid, err)
		}
	}
	if err := d.fds.CheckLocks(tree.pids()); err != nil {
		return err
	}
	if err := d.lockConns(); err != nil {
		return err
	}
	shpages, err := d.shm.dump(d.dir, d.fds.MemfdContents(), rootIDs.GetIpcNsId(), uint32(len(tree.procs))+1)
	if err != nil {
		return fmt.Errorf("shared memory: %w", err)
	}
	d.stats.shmemWritten = shpages
	if err := ns.Dump(d.dir, tree.procs[0].pid); err != nil {
		return err
	}
	var rootMounts []*mnt.MntEntry // the root's namespace, the first
	for _, m := range ns.MntNamespaces() {
		entries, err := mounts.Dump(d.dir, m.ID, m.Pid, mounts.DumpOptions{External: d.opts.ExtMounts, Like: rootMounts, IDs: d.users})
		if err != nil {
			return err
		}
		if rootMounts == nil {
			rootMounts = entries
		}
	}
	if err := cgroups.Write(d.dir, d.cg.Entry()); err != nil {
		return err
	}
	if err := d.writeTreeImages(entries, rootIDs); err != nil {
		return err
	}
	if err := image.WriteRestarts(d.dir, d.restarts); err != nil {
		return err
	}
	if err := d.writeTrackRecord(); err != nil {
		return err
	}
	// Last: the manifest lists every image written before it.
	return d.writeManifest()
}

// removeStale removes the images of an earlier dump from the directory,
// once the tree is frozen (a dump refused before leaves them), so that
// none of another PID stays beside the new ones.
func (d *dumper) removeStale() error {
	removed, err := d.dir.RemoveStale()
	if len(removed) > 0 {
		d.log.Infof("Removed %d images of an earlier dump from %s", len(removed), d.dir)
		d.log.Debugf("Removed %v", removed)
	}
	return err
}

// dumpProcess writes the images of one live process and returns its mm.
func (d *dumper) dumpProcess(tree *frozenTree, p *frozenProc, k *criucore.TaskKobjIdsEntry, pagesID uint32, mms map[int]*mm.MmEntry) (*mm.MmEntry, error) {
	ps, err := tree.collect(p)
	if err != nil {
		return nil, err
	}
	timers.InNamespace(ps.timers, d.pids.of)
	d.warnSemUndo(ps)
	cores, err := coreEntries(ps, d.xsave, d.seccomp, d.users)
	if err != nil {
		return nil, err
	}
	tids := make([]int, len(ps.threads))
	for i, th := range ps.threads {
		tids[i] = th.tid
	}
	if err := d.cgroupsOf(p.pid, tids, cores); err != nil {
		return nil, err
	}
	for i, c := range cores {
		if err := image.WriteFile(d.dir.CorePath(d.pids.of(ps.threads[i].tid)), image.Core, c); err != nil {
			return nil, err
		}
		if _, code := compel.ImageRegs(ps.threads[i].regs); code != 0 {
			d.restarts[d.pids.of(ps.threads[i].tid)] = code
		}
	}
	if err := tree.layout(ps); err != nil {
		return nil, err
	}
	mmE, err := d.mmEntry(ps)
	if err != nil {
		return nil, err
	}
	if err := d.shm.add(p.pid, mmE.GetVmas()); err != nil {
		return nil, err
	}
	if err := d.writeFiles(ps, k); err != nil {
		return nil, err
	}
	if err := mem.NameSocketMaps(mmE.GetVmas(), func(ino uint32) (uint32, error) { return d.socketID(ps.pid, ino) }); err != nil {
		return nil, err
	}
	if err := image.WriteFile(d.dir.IDsPath(d.pids.of(p.pid)), image.IDs, k); err != nil {
		return nil, err
	}
	guards, err := d.dumpMemory(ps, mmE.GetVmas(), pagesID)
	if err != nil {
		return nil, err
	}
	tree.layouts.startCheck(p.pid)
	if err := d.writeMM(p, mmE, guards); err != nil {
		return nil, err
	}
	return mmE, d.dumpCow(p, mmE, d.runs[p.pid], mms)
}

// warnSemUndo says in the log that a single-threaded process has a
// SysV semaphore undo list, whose adjustments the dump does not save, as
// CRIU saves none: the restored process will not undo its SEM_UNDO
// operations when it exits. Every multi-threaded process has a list
// (ipc.HasUndo), used or not: nothing is said of one.
func (d *dumper) warnSemUndo(ps *procState) {
	if len(ps.threads) != 1 {
		return
	}
	has, err := ipc.HasUndo(ps.pid)
	if err != nil {
		d.log.Debugf("pid %d: %v", ps.pid, err)
		return
	}
	if has {
		d.log.Warnf("pid %d has a SysV semaphore undo list (semop with SEM_UNDO): its adjustments are not saved, "+
			"as with CRIU; the restored process will not undo them when it exits", ps.pid)
	}
}

// writeMM writes the mm image of process p: mmE, its guard pages after
// its VMAs, as CRIU records them. mmE itself keeps the VMAs only.
func (d *dumper) writeMM(p *frozenProc, mmE *mm.MmEntry, guards []mem.Run) error {
	n := len(mmE.Vmas)
	mmE.Vmas = append(mmE.Vmas, mem.GuardEntries(guards)...)
	err := image.WriteFile(d.dir.MMPath(d.pids.of(p.pid)), image.MM, mmE)
	mmE.Vmas = mmE.Vmas[:n]
	return err
}

// dumpCow records which of a child's pages are still its parent's.
func (d *dumper) dumpCow(p *frozenProc, mmE *mm.MmEntry, runs []mem.Run, mms map[int]*mm.MmEntry) error {
	if p.parent == nil || mms[p.parent.pid] == nil {
		return nil
	}
	cow, err := mem.CowRuns(p.parent.pid, p.pid, mms[p.parent.pid].GetVmas(), mmE.GetVmas(), runs)
	if err != nil || len(cow) == 0 {
		return err
	}
	return mem.WriteCow(d.dir, d.pids.of(p.pid), cow)
}

// findPrivateShmem finds which objects of anonymous shared memory the
// dump writes as memfds (privateShmem), for the mappings and the
// descriptors alike; a pre-dump's mappings need it as the dump's do.
func (d *dumper) findPrivateShmem(tree *frozenTree) error {
	asMemfd, err := privateShmem(tree, d.shmemDev)
	if err != nil {
		return err
	}
	d.shmemMemfd = func(ino uint64) bool { return asMemfd[ino] }
	d.fds.ShmemAsMemfd = d.shmemMemfd
	return nil
}

// privateShmem finds the objects of anonymous shared memory that a
// process of the tree maps privately (mem.PrivateShmem), by inode
// number: they are dumped as memfds, their mappings and descriptors
// alike.
func privateShmem(tree *frozenTree, shmemDev uint64) (map[uint64]bool, error) {
	out := map[uint64]bool{}
	if shmemDev == 0 {
		return out, nil
	}
	for _, p := range tree.procs {
		if p.zombie {
			continue
		}
		vmas, err := proc.ReadMapsNaming(p.pid, mem.AnonShmemPath)
		if err != nil {
			return nil, fmt.Errorf("pid %d: %w", p.pid, err)
		}
		for _, ino := range mem.PrivateShmem(vmas, shmemDev) {
			out[ino] = true
		}
	}
	return out, nil
}

// writeFiles writes the descriptor table (once per shared table) and the
// fs state of a process.
func (d *dumper) writeFiles(ps *procState, k *criucore.TaskKobjIdsEntry) error {
	if !d.tables[k.GetFilesId()] {
		d.tables[k.GetFilesId()] = true
		hidden, err := d.hiddenFds(ps)
		if err != nil {
			return err
		}
		fds, err := d.fds.DumpFds(ps.pid, hidden...)
		if err != nil {
			return err
		}
		if err := image.WriteFile(d.dir.FdinfoPath(k.GetFilesId()), image.Fdinfo, fdinfoMessages(fds)...); err != nil {
			return err
		}
	}
	fsE, err := d.fds.DumpFS(ps.pid, ps.status.Umask)
	if err != nil {
		return fmt.Errorf("fs: %w", err)
	}
	return image.WriteFile(d.dir.FSPath(d.pids.of(ps.pid)), image.FS, fsE)
}

// socketID is the file id of the packet socket of inode ino that pid
// maps: pid must hold it at a descriptor, which its restore maps it
// from, as CRIU requires.
func (d *dumper) socketID(pid int, ino uint32) (uint32, error) {
	fds, err := proc.FdsOf(pid, fmt.Sprintf("socket:[%d]", ino))
	if err != nil {
		return 0, err
	}
	if len(fds) == 0 {
		return 0, fmt.Errorf("no descriptor of pid %d holds it: not supported (nor by criu)", pid)
	}
	id, ok := d.fds.PacketID(ino)
	if !ok {
		return 0, fmt.Errorf("not a packet socket (fd %d): only the rings of packet sockets are mapped again", fds[0])
	}
	return id, nil
}

func (d *dumper) mmEntry(ps *procState) (*mm.MmEntry, error) {
	vmas, err := mem.Backing{
		File:         func(v proc.VMA) (uint32, error) { return d.files.AddPath(ps.pid, v.Path, mem.OpenFlags(v)) },
		Memfd:        func(v proc.VMA) (uint32, error) { return d.fds.MemfdMapping(ps.pid, v) },
		Ghost:        func(v proc.VMA) (uint32, error) { return d.fds.GhostMapping(ps.pid, v, mem.OpenFlags(v)) },
		ShmemDev:     d.shmemDev,
		ShmemAsMemfd: d.shmemMemfd,
	}.Entries(ps.vmas)
	if err != nil {
		return nil, err
	}
	auxv, err := proc.ReadAuxv(ps.pid)
	if err != nil {
		return nil, err
	}
	auxv, lost := savedAuxv(auxv)
	if lost > 0 {
		d.log.Warnf("pid %d: auxv: %d entries beyond the %d words an image holds are not saved", ps.pid, lost, auxvWords)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", ps.pid))
	if err != nil {
		return nil, err
	}
	exeID, err := d.files.AddPath(ps.pid, exe, unix.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("exe %s: %w", exe, err)
	}
	s := ps.stat
	e := &mm.MmEntry{
		MmStartCode:  proto.Uint64(s.StartCode),
		MmEndCode:    proto.Uint64(s.EndCode),
		MmStartData:  proto.Uint64(s.StartData),
		MmEndData:    proto.Uint64(s.EndData),
		MmStartStack: proto.Uint64(s.StartStack),
		MmStartBrk:   proto.Uint64(s.StartBrk),
		MmBrk:        proto.Uint64(ps.brk),
		MmArgStart:   proto.Uint64(s.ArgStart),
		MmArgEnd:     proto.Uint64(s.ArgEnd),
		MmEnvStart:   proto.Uint64(s.EnvStart),
		MmEnvEnd:     proto.Uint64(s.EnvEnd),
		ExeFileId:    proto.Uint32(exeID),
		MmSavedAuxv:  auxv,
		Vmas:         vmas,
		Dumpable:     proto.Int32(int32(ps.dumpable)),
	}
	if err := ps.attrs.MMToImage(e); err != nil {
		return nil, fmt.Errorf("pid %d: %w", ps.pid, err)
	}
	return e, nil
}

// auxvWords is how many words of auxv CRIU's images hold (its
// AT_VECTOR_SIZE on x86-64): its restore calls an mm image with more
// corrupt.
const auxvWords = 44

// savedAuxv is the auxv an image holds, as CRIU saves it: without the
// AT_NULL pair (the kernel ends the vector itself) and at most auxvWords
// words. It returns how many (type, value) pairs did not fit.
func savedAuxv(words []uint64) (saved []uint64, lost int) {
	if n := len(words); n >= 2 && words[n-2] == 0 {
		words = words[:n-2]
	}
	if len(words) <= auxvWords {
		return words, 0
	}
	return words[:auxvWords], (len(words) - auxvWords) / 2
}

// pstreeEntry is p's entry of pstree.img, its PIDs as pids has them.
func pstreeEntry(p *frozenProc, pids *pidMap) *pstree.PstreeEntry {
	pgid, sid := pids.groups(p)
	e := &pstree.PstreeEntry{
		Pid:  proto.Uint32(uint32(pids.of(p.pid))),
		Ppid: proto.Uint32(0),
		Pgid: proto.Uint32(uint32(pgid)),
		Sid:  proto.Uint32(uint32(sid)),
	}
	if p.parent != nil {
		e.Ppid = proto.Uint32(uint32(pids.of(p.parent.pid)))
	}
	for _, t := range p.threads {
		e.Threads = append(e.Threads, uint32(pids.of(t.Pid)))
	}
	if p.zombie {
		e.Threads = []uint32{uint32(pids.of(p.pid))}
	}
	return e
}

// writeTreeImages writes the images of the whole tree: pstree, inventory,
// pipes data and, last, files.img, to which every process added.
func (d *dumper) writeTreeImages(tree []proto.Message, rootIDs *criucore.TaskKobjIdsEntry) error {
	inv := &inventory.InventoryEntry{
		ImgVersion:  proto.Uint32(imagesVersion),
		FdinfoPerId: proto.Bool(true),
		RootIds:     rootIDs,
		NsPerId:     proto.Bool(true),
		Lsmtype:     inventory.Lsmtype_NO_LSM.Enum(),
		// As CRIU's: the restore lifts the lock these say.
		NetworkLockMethod: proto.Uint32(uint32(d.net.method)),
		DumpCriuRunId:     proto.String(d.net.lock.RunID),
	}
	if d.cg != nil {
		inv.RootCgSet = proto.Uint32(cgroups.SelfSet)
	}
	if err := image.WriteFile(d.dir.PstreePath(), image.Pstree, tree...); err != nil {
		return err
	}
	if err := image.WriteFile(d.dir.InventoryPath(), image.Inventory, inv); err != nil {
		return err
	}
	if err := d.fds.Finish(d.dir); err != nil {
		return err
	}
	if err := files.WritePipesData(d.dir, d.fds.Pipes); err != nil {
		return err
	}
	if err := d.fds.WriteMemfds(d.dir); err != nil {
		return err
	}
	if !d.seccomp.Empty() {
		if err := image.WriteFile(d.dir.SeccompPath(), image.Seccomp, d.seccomp.Entry()); err != nil {
			return err
		}
	}
	return d.files.Write(d.dir)
}

func fdinfoMessages(fds []*fdinfo.FdinfoEntry) []proto.Message {
	out := make([]proto.Message, len(fds))
	for i, f := range fds {
		out[i] = f
	}
	return out
}
