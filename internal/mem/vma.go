package mem

import (
	"fmt"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/proc"
)

// VMA status bits of CRIU's image format (criu/include/image.h).
const (
	StatusRegular     = 1 << 0
	StatusStack       = 1 << 1
	StatusVsyscall    = 1 << 2
	StatusVdso        = 1 << 3
	StatusHeap        = 1 << 5
	StatusFilePrivate = 1 << 6
	StatusFileShared  = 1 << 7
	StatusAnonShared  = 1 << 8
	StatusAnonPrivate = 1 << 9
	StatusVvar        = 1 << 12
)

// madvise advice numbers recorded in VmaEntry.madv as 1<<advice, keyed by
// the smaps VmFlag that shows them.
var madvFlags = map[string]int{
	"dc": unix.MADV_DONTFORK,
	"dd": unix.MADV_DONTDUMP,
	"hg": unix.MADV_HUGEPAGE,
	"nh": unix.MADV_NOHUGEPAGE,
	"mg": unix.MADV_MERGEABLE,
	"wf": unix.MADV_WIPEONFORK,
}

// FileIDs gives the files.img id of the file a VMA maps.
type FileIDs func(v proc.VMA) (uint32, error)

// Entries converts a task's mappings into CRIU VMA entries. [vsyscall] is
// left out: the kernel provides it at a fixed address.
func Entries(vmas []proc.VMA, fileID FileIDs) ([]*vma.VmaEntry, error) {
	var out []*vma.VmaEntry
	for _, v := range vmas {
		if v.Path == "[vsyscall]" {
			continue
		}
		e, err := entry(v, fileID)
		if err != nil {
			return nil, fmt.Errorf("vma %x-%x %s: %w", v.Start, v.End, v.Path, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func entry(v proc.VMA, fileID FileIDs) (*vma.VmaEntry, error) {
	status, flags, err := classify(v)
	if err != nil {
		return nil, err
	}
	e := &vma.VmaEntry{
		Start:  proto.Uint64(v.Start),
		End:    proto.Uint64(v.End),
		Pgoff:  proto.Uint64(0),
		Shmid:  proto.Uint64(0),
		Prot:   proto.Uint32(uint32(v.Prot)),
		Flags:  proto.Uint32(flags),
		Status: proto.Uint32(status),
		Fd:     proto.Int64(-1),
	}
	if m := madv(v); m != 0 {
		e.Madv = proto.Uint64(m)
	}
	if status&(StatusFilePrivate|StatusFileShared) != 0 {
		id, err := fileID(v)
		if err != nil {
			return nil, err
		}
		e.Pgoff = proto.Uint64(v.Offset)
		e.Shmid = proto.Uint64(uint64(id))
		e.Fdflags = proto.Uint32(fileOpenFlags(status, v.Prot))
	}
	return e, nil
}

// classify tells what kind of mapping v is, in CRIU's status bits and mmap
// flags.
func classify(v proc.VMA) (status, flags uint32, err error) {
	status = StatusRegular
	switch v.Path {
	case "[vdso]":
		return status | StatusVdso | StatusAnonPrivate, unix.MAP_PRIVATE | unix.MAP_ANONYMOUS, nil
	case "[vvar]", "[vvar_vclock]":
		return status | StatusVvar | StatusAnonPrivate, unix.MAP_PRIVATE | unix.MAP_ANONYMOUS, nil
	}
	if v.HasFlag("gd") {
		flags |= unix.MAP_GROWSDOWN
	}
	if v.Path == "[stack]" || v.HasFlag("gd") {
		status |= StatusStack
	}
	if v.Path == "[heap]" {
		status |= StatusHeap
	}
	anon := v.Path == "" || v.Path == "[heap]" || v.Path == "[stack]" || isAnonName(v.Path)
	switch {
	case anon && v.Shared:
		return 0, 0, fmt.Errorf("shared anonymous memory is not supported yet")
	case anon:
		return status | StatusAnonPrivate, flags | unix.MAP_PRIVATE | unix.MAP_ANONYMOUS, nil
	case v.Path[0] == '[':
		return 0, 0, fmt.Errorf("special mapping %s is not supported", v.Path)
	case strings.HasPrefix(v.Path, "anon_inode:"):
		return 0, 0, fmt.Errorf("mapping of %s is not supported yet", v.Path)
	case v.Deleted:
		return 0, 0, fmt.Errorf("mapping of deleted file %s is not supported yet", v.Path)
	case v.Shared:
		return status | StatusFileShared, flags | unix.MAP_SHARED, nil
	default:
		return status | StatusFilePrivate, flags | unix.MAP_PRIVATE, nil
	}
}

func isAnonName(path string) bool {
	return len(path) > 6 && path[:6] == "[anon:"
}

func madv(v proc.VMA) uint64 {
	var m uint64
	for f, advice := range madvFlags {
		if v.HasFlag(f) {
			m |= 1 << advice
		}
	}
	return m
}

// fileOpenFlags is how a mapped file must be opened to map it again: a
// shared writable mapping needs a writable file.
func fileOpenFlags(status uint32, prot int) uint32 {
	if status&StatusFileShared != 0 && prot&unix.PROT_WRITE != 0 {
		return unix.O_RDWR
	}
	return unix.O_RDONLY
}

// HasContents reports whether the pages of a VMA of this status are
// saved in the pages image: private memory only. The vdso block is the
// kernel's and shared file pages live in their file.
func HasContents(status uint32) bool {
	if status&(StatusVdso|StatusVvar|StatusVsyscall) != 0 {
		return false
	}
	return status&(StatusAnonPrivate|StatusFilePrivate) != 0
}
