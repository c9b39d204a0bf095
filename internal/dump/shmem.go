package dump

import (
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"

	"amber/internal/image"
	"amber/internal/ipc"
	"amber/internal/mem"
)

// sharedMemory collects, process by process, the shared memory objects
// the tree maps, so that each is dumped once when all processes are:
// anonymous shared memory here, SysV segments through package ipc, and
// the memfds the files dumper found.
type sharedMemory struct {
	anon     map[uint64]*mem.ShmemSource // by shmid
	sysv     map[uint64]string           // segment id -> a path to open it by
	sysvVMAs map[int][]*vma.VmaEntry     // the mappings of processes attaching a segment
	// ipcNS is the tree's own IPC namespace, nil when it lives in
	// amber's: every segment of it is dumped, attached or not.
	ipcNS *ipcNamespace
}

// ipcNamespace is an IPC namespace of the tree's own.
type ipcNamespace struct {
	id  uint32 // in the images
	pid int    // a task in it
}

func newSharedMemory() *sharedMemory {
	return &sharedMemory{anon: map[uint64]*mem.ShmemSource{}, sysv: map[uint64]string{}, sysvVMAs: map[int][]*vma.VmaEntry{}}
}

// add notes the shared memory among pid's mappings.
func (s *sharedMemory) add(pid int, vmas []*vma.VmaEntry) error {
	for _, v := range vmas {
		st := v.GetStatus()
		if st&mem.StatusAnonShared == 0 {
			continue
		}
		path := fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, v.GetStart(), v.GetEnd())
		if st&mem.StatusSysVIPC != 0 {
			s.sysvVMAs[pid] = vmas
			if s.ipcNS != nil {
				// The whole namespace is dumped; every task is in it
				// (namespaces.Table.Fill).
				continue
			}
			if err := sameIPCNamespace(pid); err != nil {
				return err
			}
			if _, ok := s.sysv[v.GetShmid()]; !ok {
				s.sysv[v.GetShmid()] = path
			}
			continue
		}
		src := s.anon[v.GetShmid()]
		if src == nil {
			src = &mem.ShmemSource{Shmid: v.GetShmid(), Path: path}
			s.anon[v.GetShmid()] = src
		}
		src.Size = max(src.Size, v.GetPgoff()+v.GetEnd()-v.GetStart())
	}
	return nil
}

// sameIPCNamespace refuses a process of a tree living in amber's IPC
// namespace whose SysV objects amber cannot see: they are in another.
func sameIPCNamespace(pid int) error {
	theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/ipc", pid))
	if err != nil {
		return err
	}
	ours, err := os.Readlink("/proc/self/ns/ipc")
	if err != nil {
		return err
	}
	if theirs != ours {
		return fmt.Errorf("SysV shared memory of another IPC namespace (%s, amber's %s) is not supported", theirs, ours)
	}
	return nil
}

// dump writes the contents of every object, with pages images numbered
// from firstPagesID, and the SysV segments of IPC namespace nsID, or
// with the other SysV objects of the tree's own (ipcNS). It returns how
// many pages it wrote (stats-dump's shpages_written).
func (s *sharedMemory) dump(dir image.Dir, memfds []mem.ShmemSource, nsID, firstPagesID uint32) (uint64, error) {
	next := firstPagesID
	pagesID := func() uint32 { next++; return next - 1 }
	if err := s.checkShmids(memfds, slices.Collect(maps.Keys(s.sysv))); err != nil {
		return 0, err
	}
	var pages uint64
	for _, src := range append(s.anonSources(), memfds...) {
		n, err := mem.DumpShmem(src, dir, pagesID())
		if err != nil {
			return pages, err
		}
		pages += n
	}
	if s.ipcNS != nil {
		n, sizes, err := ipc.DumpNamespace(dir, s.ipcNS.id, s.ipcNS.pid, pagesID)
		if err != nil {
			return pages + n, err
		}
		// Found only now: a clash fails the dump all the same.
		if err := s.checkShmids(memfds, slices.Collect(maps.Keys(sizes))); err != nil {
			return pages + n, err
		}
		return pages + n, s.checkAttachments(sizes)
	}
	if len(s.sysv) == 0 {
		return pages, nil
	}
	sizes, err := ipc.Sizes(slices.Sorted(maps.Keys(s.sysv)))
	if err != nil {
		return pages, err
	}
	if err := s.checkAttachments(sizes); err != nil {
		return pages, err
	}
	n, err := ipc.DumpShm(dir, nsID, s.sysv, pagesID)
	return pages + n, err
}

// checkAttachments checks that restore can make every SysV attachment
// of the tree (mem.CheckSysVAttachments); sizes are the segments', by
// id.
func (s *sharedMemory) checkAttachments(sizes map[uint64]uint64) error {
	for _, pid := range slices.Sorted(maps.Keys(s.sysvVMAs)) {
		if err := mem.CheckSysVAttachments(s.sysvVMAs[pid], sizes); err != nil {
			return fmt.Errorf("pid %d: %w", pid, err)
		}
	}
	return nil
}

// anonSources are the shared anonymous objects, in id order.
func (s *sharedMemory) anonSources() []mem.ShmemSource {
	var out []mem.ShmemSource
	for _, id := range slices.Sorted(maps.Keys(s.anon)) {
		out = append(out, *s.anon[id])
	}
	return out
}

// checkShmids refuses two objects that would share a
// pagemap-shmem-SHMID.img: a SysV segment's inode number is its id
// (sysv), which may equal another object's inode number.
func (s *sharedMemory) checkShmids(memfds []mem.ShmemSource, sysv []uint64) error {
	seen := map[uint64]string{}
	note := func(id uint64, what string) error {
		if other, ok := seen[id]; ok {
			return fmt.Errorf("shared memory objects %s and %s both have shmid %d: not supported", other, what, id)
		}
		seen[id] = what
		return nil
	}
	for id, src := range s.anon {
		if err := note(id, src.Path); err != nil {
			return err
		}
	}
	for _, src := range memfds {
		if err := note(src.Shmid, src.Path); err != nil {
			return err
		}
	}
	for _, id := range sysv {
		if err := note(id, fmt.Sprintf("SysV shared memory %d", id)); err != nil {
			return err
		}
	}
	return nil
}
