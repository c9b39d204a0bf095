// Package ipc dumps and restores the System V IPC objects a tree uses, as
// CRIU's ipc_ns.c does for an IPC namespace. The tree's segments are
// dumped only when it lives in amber's IPC namespace (the settings of an
// IPC namespace of its own are package namespaces'), and only the shared
// memory segments it has attached are saved, in ipcns-shm-ID.img (an
// IpcShmEntry each) with their contents in pagemap-shmem-ID.img (package
// mem), where ID is the segment's id.
//
// Restore makes each segment again in amber's IPC namespace, with the
// same id (through /proc/sys/kernel/shm_next_id), key, owner and mode,
// and fills it; the restored tasks then attach it themselves (package
// mem). A segment that still exists, unattached, with the same key and
// size, is the dumped one left behind when the tree was killed: it is
// reused and refilled. One that was removed (IPC_RMID) while attached is
// removed again once the tree has attached it.
package ipc

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"

	ipc_desc "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-desc"
	ipcshm "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-shm"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/mem"
)

// Mode bits of a segment that are state, not permission (linux/shm.h).
const (
	shmDest   = 0o1000 // removed, destroyed at the last detach
	shmLocked = 0o2000 // SHM_LOCK
)

// shmNextID is the sysctl that chooses the id of the next segment.
const shmNextID = "/proc/sys/kernel/shm_next_id"

// DumpShm writes ipcns-shm-NSID.img with the segments attached (id ->
// a path amber opens the segment's file by: /proc/PID/map_files/...),
// and each one's contents with mem.DumpShmem; pagesID gives the pages
// image ids. It returns how many pages it wrote.
func DumpShm(dir image.Dir, nsID uint32, attached map[uint64]string, pagesID func() uint32) (uint64, error) {
	var entries []proto.Message
	var written uint64
	for _, id := range slices.Sorted(mapKeys(attached)) {
		e, err := segmentEntry(int(id))
		if err != nil {
			return 0, err
		}
		src := mem.ShmemSource{Shmid: id, Path: attached[id], Size: e.GetSize()}
		n, err := mem.DumpShmem(src, dir, pagesID())
		if err != nil {
			return 0, err
		}
		written += n
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		return 0, nil
	}
	return written, image.WriteFile(dir.IpcnsShmPath(nsID), image.IpcnsShm, entries...)
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
	if ds.Perm.Mode&shmLocked != 0 {
		return nil, fmt.Errorf("SysV shared memory %d: locked in memory (SHM_LOCK): not supported", id)
	}
	p := ds.Perm
	return &ipcshm.IpcShmEntry{
		Desc: &ipc_desc.IpcDescEntry{
			Key: proto.Uint32(uint32(p.Key)), Uid: proto.Uint32(p.Uid), Gid: proto.Uint32(p.Gid),
			Cuid: proto.Uint32(p.Cuid), Cgid: proto.Uint32(p.Cgid), Mode: proto.Uint32(p.Mode),
			Id: proto.Uint32(uint32(id)),
		},
		Size:       proto.Uint64(ds.Segsz),
		InPagemaps: proto.Bool(true),
	}, nil
}

// Segments are the segments a restore made or reused.
type Segments struct {
	created []int // made by this restore
	dest    []int // to remove once attached
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
			return nil, fmt.Errorf("SysV shared memory %d (key %#x): %w", e.GetDesc().GetId(), e.GetDesc().GetKey(), err)
		}
	}
	return s, nil
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
	if err := fill(dir, id, e.GetSize()); err != nil {
		return err
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
	if err := os.WriteFile(shmNextID, []byte(strconv.FormatUint(uint64(d.GetId()), 10)), 0); err != nil {
		return fmt.Errorf("choose the id: %w", err)
	}
	id, err := unix.SysvShmGet(int(int32(d.GetKey())), int(e.GetSize()), int(d.GetMode()&0o777)|unix.IPC_CREAT|unix.IPC_EXCL)
	if err != nil {
		return fmt.Errorf("shmget: %w", err)
	}
	if id != int(d.GetId()) {
		unix.SysvShmCtl(id, unix.IPC_RMID, nil)
		return fmt.Errorf("shmget gave id %d (%s raced with another process?)", id, shmNextID)
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
	ds.Perm.Uid, ds.Perm.Gid, ds.Perm.Mode = d.GetUid(), d.GetGid(), d.GetMode()&0o777
	if _, err := unix.SysvShmCtl(id, unix.IPC_SET, &ds); err != nil {
		return fmt.Errorf("IPC_SET owner %d:%d mode %#o: %w", d.GetUid(), d.GetGid(), d.GetMode()&0o777, err)
	}
	return nil
}

// fill attaches the segment to amber, clears it and copies the saved
// pages in.
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
	if err := unix.Madvise(seg, unix.MADV_REMOVE); err != nil {
		return fmt.Errorf("clear: %w", err)
	}
	return pages.CopyInto(seg, size)
}

// Finish removes, once every task has attached its segments, those that
// were removed at dump: they go away with their last attachment again.
func (s *Segments) Finish() error {
	if s == nil {
		return nil
	}
	for _, id := range s.dest {
		if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
			return fmt.Errorf("SysV shared memory %d: IPC_RMID: %w", id, err)
		}
	}
	return nil
}

// Undo removes the segments the restore made, after a failure.
func (s *Segments) Undo() {
	if s == nil {
		return
	}
	for _, id := range s.created {
		unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	}
}
