package dump

import (
	"slices"
	"sort"

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
	next   uint32
	known  map[int][]owner // by kcmp type, in kcmp's order unless linear
	linear map[int]bool    // types kcmp failed to order once
}

type owner struct {
	pid int
	id  uint32
}

func newKobjIDs() *kobjIDs { return &kobjIDs{known: map[int][]owner{}, linear: map[int]bool{}} }

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

// id finds pid's object of kind typ among the known ones by binary
// search in kcmp's order (a per-boot order of the objects' addresses), so
// that numbering a tree of n processes costs n log n kcmp calls, not n².
// Should kcmp fail to order two objects, it falls back to comparing with
// each known one.
func (k *kobjIDs) id(typ, pid int) uint32 {
	if k.linear[typ] {
		return k.idUnordered(typ, pid)
	}
	known := k.known[typ]
	ordered := true
	i, found := sort.Find(len(known), func(i int) int {
		switch kcmp(pid, known[i].pid, typ) {
		case 0:
			return 0
		case 1:
			return -1
		case 2:
			return 1
		}
		ordered = false
		return 0
	})
	if !ordered {
		k.linear[typ] = true
		return k.idUnordered(typ, pid)
	}
	if found {
		return known[i].id
	}
	k.next++
	k.known[typ] = slices.Insert(known, i, owner{pid, k.next})
	return k.next
}

// idUnordered is id by comparing with every known object, for objects
// kcmp cannot order.
func (k *kobjIDs) idUnordered(typ, pid int) uint32 {
	for _, o := range k.known[typ] {
		if kcmp(pid, o.pid, typ) == 0 {
			return o.id
		}
	}
	k.next++
	k.known[typ] = append(k.known[typ], owner{pid, k.next})
	return k.next
}

// kcmp compares two processes' objects of kind typ: 0 the same, 1 and 2
// ordered before or after, -1 when the call fails.
func kcmp(pid1, pid2, typ int) int {
	r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(pid1), uintptr(pid2), uintptr(typ), 0, 0, 0)
	if e != 0 {
		return -1
	}
	return int(r)
}
