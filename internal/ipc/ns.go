package ipc

// The System V objects and POSIX message queues of an IPC namespace of
// the tree's own.

import (
	"amber/internal/image"
	"amber/internal/namespaces"
)

// DumpNamespace writes the System V objects of pid's IPC namespace,
// whose id is nsID: ipcns-shm-NSID.img with the contents of every
// segment (pages image ids from pagesID), ipcns-sem-NSID.img and
// ipcns-msg-NSID.img, and its POSIX message queues in
// amber-mqueue-NSID.txt. It returns how many pages it wrote and the size
// of each segment, by id.
func DumpNamespace(dir image.Dir, nsID uint32, pid int, pagesID func() uint32) (pages uint64, sizes map[uint64]uint64, err error) {
	err = namespaces.InNamespace(pid, namespaces.IPC, func() error {
		var err error
		if pages, sizes, err = dumpNamespaceShm(dir, nsID, pagesID); err != nil {
			return err
		}
		if err := dumpSem(dir, nsID); err != nil {
			return err
		}
		if err := dumpMsg(dir, nsID); err != nil {
			return err
		}
		return dumpMqueues(dir, nsID)
	})
	return pages, sizes, err
}

// RestoreNamespace makes the System V objects and POSIX message queues
// of IPC namespace nsID
// again in pid's, a new one, before its settings are written: these
// include the kernel.*_next_id sysctls, which making an object with a
// chosen id uses up, and limits below what its objects hold. A message
// queue may raise kernel.msgmnb and kernel.msgmax meanwhile. Finish
// removes the segments removed at dump once the tasks have attached
// them.
func RestoreNamespace(dir image.Dir, nsID uint32, pid int) (*Segments, error) {
	s := &Segments{nsPid: pid}
	err := namespaces.InNamespace(pid, namespaces.IPC, func() error {
		entries, err := readShm(dir.IpcnsShmPath(nsID))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := s.restore(dir, e); err != nil {
				return shmError(e, err)
			}
		}
		if err := restoreSem(dir, nsID); err != nil {
			return err
		}
		if err := restoreMsg(dir, nsID); err != nil {
			return err
		}
		return restoreMqueues(dir, nsID)
	})
	if err != nil {
		return nil, err
	}
	s.created = nil // they go with the namespace
	return s, nil
}
