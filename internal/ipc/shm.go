// Package ipc dumps and restores System V IPC objects, as CRIU's
// ipc_ns.c does: shared memory segments (shm.go), semaphore sets
// (sem.go) and message queues (msg.go), each kind's dump beside its
// restore.
//
// A tree in an IPC namespace of its own (ns.go) is dumped with every
// object of the namespace, attached or not, in ipcns-shm-ID.img (an
// IpcShmEntry each, the contents in pagemap-shmem-SHMID.img, package
// mem), ipcns-sem-ID.img and ipcns-msg-ID.img, ID the namespace's id;
// its POSIX message queues, which CRIU leaves out, go to
// amber-mqueue-ID.txt (mqueue.go); its settings are package namespaces'
// (ipcns-var-ID.img). The restore
// makes each object again in the new namespace before its settings are
// written, with its id (through the kernel.*_next_id sysctls), key,
// owner, mode and contents; the restored tasks then attach their
// segments themselves (package mem).
//
// A tree living in amber's IPC namespace is dumped with the shared
// memory segments it has attached only, in the ipcns-shm image of
// amber's namespace id, and restored in the restorer's namespace: a
// segment that still exists there, unattached, with the same key and
// size, is the dumped one left behind when the tree was killed, and is
// reused and refilled.
//
// Either way a segment that was removed (IPC_RMID) while attached is
// removed again once the tree has attached it, a segment locked in
// memory (SHM_LOCK) is locked again, and a segment of huge pages
// (SHM_HUGETLB, a file of the kernel's hugetlbfs mount) is made again of
// huge pages of its size (IpcShmEntry.hugetlb_flag, as CRIU records it).
package ipc

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"slices"
	"unsafe"

	ipc_desc "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-desc"
	ipcshm "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-shm"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/mem"
	"amber/internal/namespaces"
	"amber/internal/proc"
)

// Mode bits of a segment that are state, not permission, and commands
// and flags of linux/shm.h.
const (
	shmDest   = 0o1000 // removed, destroyed at the last detach
	shmLocked = 0o2000 // locked by SHM_LOCK

	shmLock    = 11     // SHM_LOCK: keep the segment's pages in memory
	shmHugetlb = 0o4000 // SHM_HUGETLB: a segment of huge pages
	// shmHugeShift is where shmget takes log2 of the huge page size
	// (SHM_HUGE_SHIFT).
	shmHugeShift = 26
)

// DumpShm writes ipcns-shm-NSID.img with the segments attached (id ->
// a path amber opens the segment's file by: /proc/PID/map_files/...),
// and each one's contents with mem.DumpShmem; pagesID gives the pages
// image ids. It returns how many pages it wrote.
func DumpShm(dir image.Dir, nsID uint32, attached map[uint64]string, pagesID func() uint32) (uint64, error) {
	var entries []proto.Message
	var pages uint64
	for _, id := range slices.Sorted(mapKeys(attached)) {
		e, err := segmentEntry(int(id))
		if err != nil {
			return pages, err
		}
		if e.HugetlbFlag, err = hugetlbFlag(attached[id]); err != nil {
			return pages, fmt.Errorf("SysV shared memory %d: %w", id, err)
		}
		src := mem.ShmemSource{Shmid: id, Path: attached[id], Size: mappedSize(e)}
		n, err := mem.DumpShmem(src, dir, pagesID())
		if err != nil {
			return pages, err
		}
		pages += n
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		return pages, nil
	}
	return pages, image.WriteFile(dir.IpcnsShmPath(nsID), image.IpcnsShm, entries...)
}

// Sizes returns the size of each segment, for mem.CheckSysVAttachments.
func Sizes(ids []uint64) (map[uint64]uint64, error) {
	out := map[uint64]uint64{}
	for _, id := range ids {
		var ds unix.SysvShmDesc
		if _, err := unix.SysvShmCtl(int(id), unix.IPC_STAT, &ds); err != nil {
			return nil, fmt.Errorf("SysV shared memory %d: IPC_STAT: %w", id, err)
		}
		out[id] = ds.Segsz
	}
	return out, nil
}

func mapKeys[V any](m map[uint64]V) func(func(uint64) bool) {
	return func(yield func(uint64) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// segmentEntry describes segment id as it is now.
func segmentEntry(id int) (*ipcshm.IpcShmEntry, error) {
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
		return nil, fmt.Errorf("SysV shared memory %d: IPC_STAT: %w", id, err)
	}
	return shmEntry(id, &ds)
}

// shmEntry describes segment id, as ds says it is: its mode keeps
// SHM_DEST and SHM_LOCKED, as CRIU's does.
func shmEntry(id int, ds *unix.SysvShmDesc) (*ipcshm.IpcShmEntry, error) {
	return &ipcshm.IpcShmEntry{Desc: descEntry(id, ds.Perm), Size: proto.Uint64(ds.Segsz), InPagemaps: proto.Bool(true)}, nil
}

// hugetlbFlag tells, from the file of a segment's attachment at path,
// whether it is made of huge pages, and returns what IpcShmEntry's
// hugetlb_flag records then, as CRIU does: SHM_HUGETLB with log2 of the
// page size at SHM_HUGE_SHIFT, for shmget; nil for a segment of
// ordinary pages.
func hugetlbFlag(path string) (*uint32, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", path, err)
	}
	if fs.Type != unix.HUGETLBFS_MAGIC {
		return nil, nil
	}
	size := uint64(fs.Bsize)
	if size&(size-1) != 0 || size <= pageSize {
		return nil, fmt.Errorf("%s: hugetlbfs with pages of %d bytes", path, size)
	}
	return proto.Uint32(shmHugetlb | uint32(bits.TrailingZeros64(size))<<shmHugeShift), nil
}

// dumpNamespaceShm writes ipcns-shm-NSID.img with every segment of the
// calling thread's IPC namespace, and their contents, with pages image
// ids from pagesID. It returns how many pages it wrote and the size of
// each segment, by id.
func dumpNamespaceShm(dir image.Dir, nsID uint32, pagesID func() uint32) (uint64, map[uint64]uint64, error) {
	segs, err := listShm()
	if err != nil {
		return 0, nil, err
	}
	var entries []proto.Message
	var pages uint64
	sizes := map[uint64]uint64{}
	for _, s := range segs {
		e, err := shmEntry(s.id, &s.ds)
		if err != nil {
			return pages, nil, err
		}
		n, err := dumpSegment(dir, e, pagesID())
		if err != nil {
			return pages, nil, fmt.Errorf("SysV shared memory %d: %w", s.id, err)
		}
		pages += n
		sizes[uint64(s.id)] = s.ds.Segsz
		entries = append(entries, e)
	}
	return pages, sizes, image.WriteFile(dir.IpcnsShmPath(nsID), image.IpcnsShm, entries...)
}

// dumpSegment saves the contents of segment e, which amber attaches for
// the time it reads them (the segment may be attached by nobody else),
// and notes in e whether it is made of huge pages.
func dumpSegment(dir image.Dir, e *ipcshm.IpcShmEntry, pagesID uint32) (uint64, error) {
	id := int(e.GetDesc().GetId())
	seg, err := unix.SysvShmAttach(id, 0, unix.SHM_RDONLY)
	if err != nil {
		return 0, fmt.Errorf("shmat: %w", err)
	}
	defer unix.SysvShmDetach(seg)
	start := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(seg))))
	end, err := mappingEnd(start)
	if err != nil {
		return 0, err
	}
	path := fmt.Sprintf("/proc/self/map_files/%x-%x", start, end)
	if e.HugetlbFlag, err = hugetlbFlag(path); err != nil {
		return 0, err
	}
	return mem.DumpShmem(mem.ShmemSource{Shmid: uint64(id), Path: path, Size: mappedSize(e)}, dir, pagesID)
}

// mappedSize is how much of segment e an attachment maps, and the tasks
// can write: its size rounded up to its page size, which may be a huge
// page's.
func mappedSize(e *ipcshm.IpcShmEntry) uint64 {
	page := uint64(pageSize)
	if f := e.GetHugetlbFlag(); f&shmHugetlb != 0 {
		page = mem.HugePageSize(unix.MAP_HUGETLB | f&(unix.MAP_HUGE_MASK<<shmHugeShift))
	}
	return (e.GetSize() + page - 1) &^ (page - 1)
}

// mappingEnd finds the end of amber's mapping that starts at start: an
// attachment ends at the segment's size rounded up to its page size,
// which may be a huge page's.
func mappingEnd(start uint64) (uint64, error) {
	vmas, err := proc.ReadMaps(os.Getpid())
	if err != nil {
		return 0, err
	}
	for _, v := range vmas {
		if v.Start == start {
			return v.End, nil
		}
	}
	return 0, fmt.Errorf("no mapping of amber's at %#x, where it attached the segment", start)
}

const pageSize = 4096

// Segments are the segments a restore made or reused.
type Segments struct {
	created []int // made by this restore in amber's IPC namespace
	dest    []int // to remove once attached
	// nsPid is a task in the new IPC namespace the segments were made
	// in, 0 for amber's own.
	nsPid int
}

// RestoreShm makes the segments of ipcns-shm-NSID.img again and fills
// them. On error, the segments it made are removed again.
func RestoreShm(dir image.Dir, nsID uint32) (s *Segments, err error) {
	entries, err := readShm(dir.IpcnsShmPath(nsID))
	if err != nil {
		return nil, err
	}
	s = &Segments{}
	defer func() {
		if err != nil {
			s.Undo()
		}
	}()
	for _, e := range entries {
		if err := s.restore(dir, e); err != nil {
			return nil, shmError(e, err)
		}
	}
	return s, nil
}

// shmError names segment e in err.
func shmError(e *ipcshm.IpcShmEntry, err error) error {
	return fmt.Errorf("SysV shared memory %d (key %#x): %w", e.GetDesc().GetId(), e.GetDesc().GetKey(), err)
}

func readShm(path image.Path) ([]*ipcshm.IpcShmEntry, error) {
	var out []*ipcshm.IpcShmEntry
	err := image.EachEntry(path, image.IpcnsShm, func(r *image.Reader) error {
		e := new(ipcshm.IpcShmEntry)
		if err := r.Next(e); err != nil {
			return err
		}
		if e.GetDesc() == nil || !e.GetInPagemaps() {
			return fmt.Errorf("%s: segment without its description or with its contents inline: not supported", path)
		}
		if f := e.GetHugetlbFlag(); f != 0 && f&^(shmHugetlb|unix.MAP_HUGE_MASK<<shmHugeShift) != 0 {
			return fmt.Errorf("%s: SysV shared memory %d: hugetlb_flag %#x: unknown flags", path, e.GetDesc().GetId(), f)
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// restore makes (or reuses) one segment, sets its owner and mode and
// fills it.
func (s *Segments) restore(dir image.Dir, e *ipcshm.IpcShmEntry) error {
	d := e.GetDesc()
	id := int(d.GetId())
	var ds unix.SysvShmDesc
	_, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds)
	switch {
	case err == nil:
		if err := reusable(&ds, e); err != nil {
			return err
		}
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EIDRM):
		if err := s.create(e); err != nil {
			return err
		}
	default:
		return fmt.Errorf("IPC_STAT: %w", err)
	}
	if err := setOwner(id, d); err != nil {
		return err
	}
	if err := fill(dir, id, mappedSize(e)); err != nil {
		return err
	}
	if d.GetMode()&shmLocked != 0 {
		if _, err := unix.SysvShmCtl(id, shmLock, nil); err != nil {
			return fmt.Errorf("SHM_LOCK: %w", err)
		}
	}
	if d.GetMode()&shmDest != 0 {
		s.dest = append(s.dest, id)
	}
	return nil
}

// reusable accepts a segment that has the dumped one's id only if it is
// that one, left behind: same key and size, attached by nobody.
func reusable(ds *unix.SysvShmDesc, e *ipcshm.IpcShmEntry) error {
	d := e.GetDesc()
	switch {
	case uint32(ds.Perm.Key) != d.GetKey() || ds.Segsz != e.GetSize():
		return fmt.Errorf("id taken by another segment (key %#x, %d bytes): cannot restore it", uint32(ds.Perm.Key), ds.Segsz)
	case ds.Nattch != 0:
		return fmt.Errorf("still attached by %d processes: cannot restore it over them", ds.Nattch)
	}
	return nil
}

// create makes the segment with the dumped id and key.
func (s *Segments) create(e *ipcshm.IpcShmEntry) error {
	d := e.GetDesc()
	if err := setNextID("shm", d.GetId()); err != nil {
		return err
	}
	flags := int(d.GetMode()&0o777) | unix.IPC_CREAT | unix.IPC_EXCL | int(e.GetHugetlbFlag())
	id, err := unix.SysvShmGet(int(int32(d.GetKey())), int(e.GetSize()), flags)
	if err != nil {
		return fmt.Errorf("shmget: %w", err)
	}
	if id != int(d.GetId()) {
		unix.SysvShmCtl(id, unix.IPC_RMID, nil)
		return fmt.Errorf("shmget gave id %d (kernel.shm_next_id raced with another process?)", id)
	}
	s.created = append(s.created, id)
	return nil
}

// setOwner gives the segment its dumped owner and permissions (the
// creator's ids stay amber's, as with CRIU).
func setOwner(id int, d *ipc_desc.IpcDescEntry) error {
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
		return fmt.Errorf("IPC_STAT: %w", err)
	}
	setPerm(&ds.Perm, d)
	if _, err := unix.SysvShmCtl(id, unix.IPC_SET, &ds); err != nil {
		return fmt.Errorf("IPC_SET owner %d:%d mode %#o: %w", d.GetUid(), d.GetGid(), d.GetMode()&0o777, err)
	}
	return nil
}

// fill attaches the segment to amber, clears it and copies the saved
// pages in, up to size, what an attachment maps.
func fill(dir image.Dir, id int, size uint64) error {
	pages, err := mem.ReadShmemPages(dir, uint64(id))
	if err != nil {
		return err
	}
	seg, err := unix.SysvShmAttach(id, 0, 0)
	if err != nil {
		return fmt.Errorf("shmat: %w", err)
	}
	defer unix.SysvShmDetach(seg)
	// seg is as long as the segment; its mapping goes on to size.
	mapped := unsafe.Slice(unsafe.SliceData(seg), size)
	if err := unix.Madvise(mapped, unix.MADV_REMOVE); err != nil {
		return fmt.Errorf("clear: %w", err)
	}
	return pages.CopyInto(mapped, size)
}

// Finish removes, once every task has attached its segments, those that
// were removed at dump: they go away with their last attachment again.
func (s *Segments) Finish() error {
	if s == nil {
		return nil
	}
	remove := func() error {
		for _, id := range s.dest {
			if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
				return fmt.Errorf("SysV shared memory %d: IPC_RMID: %w", id, err)
			}
		}
		return nil
	}
	if s.nsPid == 0 || len(s.dest) == 0 {
		return remove()
	}
	return namespaces.InNamespace(s.nsPid, namespaces.IPC, remove)
}

// Undo removes the segments the restore made, after a failure. Those
// of a new namespace go with it, when its tasks are killed.
func (s *Segments) Undo() {
	if s == nil {
		return
	}
	for _, id := range s.created {
		unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	}
}
