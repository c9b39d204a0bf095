package dump

import (
	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// kcmp types of linux/kcmp.h.
const (
	kcmpVM      = 1
	kcmpFiles   = 2
	kcmpFS      = 3
	kcmpSighand = 4
)

// kobjIDs numbers the kernel objects processes may share (memory,
// descriptor table, fs state, signal handlers): processes that share one
// get the same id, found with kcmp.
type kobjIDs struct {
	next  uint32
	known map[int][]owner // by kcmp type
}

type owner struct {
	pid int
	id  uint32
}

func newKobjIDs() *kobjIDs { return &kobjIDs{known: map[int][]owner{}} }

// Namespace ids: every process is in the dumper's namespaces (amber does
// not dump namespaces yet). Each kind gets its own number, as in CRIU,
// whose numbering is one sequence over all namespaces.
const (
	pidNsID uint32 = iota + 1
	netNsID
	ipcNsID
	utsNsID
	timeNsID
	mntNsID
	userNsID
	cgroupNsID
)

// of returns the ids of pid's objects.
func (k *kobjIDs) of(pid int) (*criucore.TaskKobjIdsEntry, error) {
	return &criucore.TaskKobjIdsEntry{
		VmId:       proto.Uint32(k.id(kcmpVM, pid)),
		FilesId:    proto.Uint32(k.id(kcmpFiles, pid)),
		FsId:       proto.Uint32(k.id(kcmpFS, pid)),
		SighandId:  proto.Uint32(k.id(kcmpSighand, pid)),
		PidNsId:    proto.Uint32(pidNsID),
		NetNsId:    proto.Uint32(netNsID),
		IpcNsId:    proto.Uint32(ipcNsID),
		UtsNsId:    proto.Uint32(utsNsID),
		MntNsId:    proto.Uint32(mntNsID),
		UserNsId:   proto.Uint32(userNsID),
		CgroupNsId: proto.Uint32(cgroupNsID),
		TimeNsId:   proto.Uint32(timeNsID),
	}, nil
}

func (k *kobjIDs) id(typ, pid int) uint32 {
	for _, o := range k.known[typ] {
		r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(o.pid), uintptr(typ), 0, 0, 0)
		if e == 0 && r == 0 {
			return o.id
		}
	}
	k.next++
	k.known[typ] = append(k.known[typ], owner{pid, k.next})
	return k.next
}
