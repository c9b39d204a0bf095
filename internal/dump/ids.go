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

// of returns the ids of pid's objects; its namespaces' are left to
// package namespaces.
func (k *kobjIDs) of(pid int) *criucore.TaskKobjIdsEntry {
	return &criucore.TaskKobjIdsEntry{
		VmId:      proto.Uint32(k.id(kcmpVM, pid)),
		FilesId:   proto.Uint32(k.id(kcmpFiles, pid)),
		FsId:      proto.Uint32(k.id(kcmpFS, pid)),
		SighandId: proto.Uint32(k.id(kcmpSighand, pid)),
	}
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
