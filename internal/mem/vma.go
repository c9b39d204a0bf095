package mem

import (
	"fmt"
	"math/bits"
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
	StatusSysVIPC     = 1 << 10
	StatusSocket      = 1 << 11
	StatusVvar        = 1 << 12
	StatusMemfd       = 1 << 14
	// StatusGuard marks no mapping but a range of guard pages
	// (MADV_GUARD_INSTALL), recorded after the VMAs (guard.go).
	StatusGuard = 1 << 16
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
	"sr": unix.MADV_SEQUENTIAL,
	"rr": unix.MADV_RANDOM,
}

// mmapVmFlags are the mmap flags recorded in VmaEntry.flags, keyed by the
// smaps VmFlag that shows them, as CRIU's parse_vmflags has them.
// MAP_HUGETLB ("ht") comes with its page size from hugetlbFlags.
var mmapVmFlags = map[string]uint32{
	"lo": unix.MAP_LOCKED,
	"nr": unix.MAP_NORESERVE,
	"dp": unix.MAP_DROPPABLE,
}

// anonHugetlbPath is the name the kernel gives the hugetlbfs file behind
// a MAP_ANONYMOUS|MAP_HUGETLB mapping (always " (deleted)").
const anonHugetlbPath = "/anon_hugepage"

// FileIDs gives the files.img id of the file a VMA maps.
type FileIDs func(v proc.VMA) (uint32, error)

// Backing tells Entries what the objects behind a task's mappings are.
type Backing struct {
	// File gives the files.img id of a mapped regular file.
	File FileIDs
	// Memfd gives the files.img id of a mapped memfd (files.Dumper's
	// MemfdMapping); nil refuses memfd mappings.
	Memfd FileIDs
	// Ghost gives the files.img id of a mapped regular file that was
	// deleted (files.Dumper's GhostMapping); nil refuses them.
	Ghost FileIDs
	// ShmemDev is the device of the kernel's internal shmem mount
	// (kerndat.ShmemDev), where anonymous shared memory, memfds and SysV
	// segments live; 0 refuses them all.
	ShmemDev uint64
	// ShmemAsMemfd tells the objects of anonymous shared memory, by
	// inode number, to dump as memfds (PrivateShmem finds them): every
	// mapping of one is then a memfd mapping (StatusMemfd), private or
	// shared, named by Memfd; nil for none.
	ShmemAsMemfd func(ino uint64) bool
}

// PrivateShmem returns the inode numbers of the objects of anonymous
// shared memory (on the shmem mount of device shmemDev) that vmas map
// privately: a file of one, opened through /proc/PID/map_files and
// mapped MAP_PRIVATE (zdtm's shmemfd-priv). Such a mapping shows the
// object's pages until it writes them, so it must map the restored
// object; amber dumps these objects the way CRIU 4 dumps every one, as
// memfds named "/dev/zero" (Backing.ShmemAsMemfd), whose private
// mappings restore maps from the memfd before it writes their own
// pages.
func PrivateShmem(vmas []proc.VMA, shmemDev uint64) []uint64 {
	bk := Backing{ShmemDev: shmemDev}
	var out []uint64
	for _, v := range vmas {
		if !v.Shared && bk.onShmem(v) && v.Path == AnonShmemPath {
			out = append(out, v.Inode)
		}
	}
	return out
}

// AnonShmemPath is the name the kernel gives the file of anonymous
// shared memory (MAP_SHARED|MAP_ANONYMOUS), " (deleted)" stripped.
const AnonShmemPath = "/dev/zero"

// Entries converts a task's mappings into CRIU VMA entries, with mapped
// files resolved by fileID and no shared memory allowed. [vsyscall] is
// left out: the kernel provides it at a fixed address.
func Entries(vmas []proc.VMA, fileID FileIDs) ([]*vma.VmaEntry, error) {
	return Backing{File: fileID}.Entries(vmas)
}

// Entries converts a task's mappings into CRIU VMA entries. [vsyscall] is
// left out: the kernel provides it at a fixed address.
func (bk Backing) Entries(vmas []proc.VMA) ([]*vma.VmaEntry, error) {
	var out []*vma.VmaEntry
	for _, v := range vmas {
		if v.Path == "[vsyscall]" {
			continue
		}
		e, err := bk.entry(v)
		if err != nil {
			return nil, fmt.Errorf("vma %x-%x %s: %w", v.Start, v.End, v.Path, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func (bk Backing) entry(v proc.VMA) (*vma.VmaEntry, error) {
	status, flags, err := bk.classify(v)
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
	switch {
	case status&(StatusFilePrivate|StatusFileShared) != 0:
		ids := bk.File
		switch {
		case status&StatusMemfd != 0:
			ids = bk.Memfd
		case v.Deleted:
			ids = bk.Ghost
		}
		if ids == nil {
			return nil, fmt.Errorf("no way to dump the file it maps")
		}
		id, err := ids(v)
		if err != nil {
			return nil, err
		}
		e.Pgoff = proto.Uint64(v.Offset)
		e.Shmid = proto.Uint64(uint64(id))
		e.Fdflags = proto.Uint32(OpenFlags(v))
	case status&StatusSocket != 0:
		// The socket's inode, until the dump names its file
		// (NameSocketMaps).
		e.Pgoff = proto.Uint64(v.Offset)
		e.Shmid = proto.Uint64(v.Inode)
	case status&StatusAnonShared != 0:
		// The object is the shmem inode (for SysV its inode number is
		// the segment id); pgoff is the offset in it.
		e.Pgoff = proto.Uint64(v.Offset)
		e.Shmid = proto.Uint64(v.Inode)
		if status&StatusSysVIPC != 0 {
			e.Fdflags = proto.Uint32(OpenFlags(v))
		}
	}
	return e, nil
}

// classify tells what kind of mapping v is, in CRIU's status bits and mmap
// flags, with the flags its VmFlags show (MAP_LOCKED, MAP_NORESERVE,
// MAP_DROPPABLE, MAP_HUGETLB and its page size).
func (bk Backing) classify(v proc.VMA) (status, flags uint32, err error) {
	switch v.Path {
	case "[vdso]":
		return StatusRegular | StatusVdso | StatusAnonPrivate, unix.MAP_PRIVATE | unix.MAP_ANONYMOUS, nil
	case "[vvar]", "[vvar_vclock]":
		return StatusRegular | StatusVvar | StatusAnonPrivate, unix.MAP_PRIVATE | unix.MAP_ANONYMOUS, nil
	}
	huge, err := hugetlbFlags(v)
	if err != nil {
		return 0, 0, err
	}
	status, flags, err = bk.classifyKind(v)
	if err != nil {
		return 0, 0, err
	}
	flags |= huge | vmFlagsMmap(v)
	if flags&unix.MAP_DROPPABLE != 0 {
		// MAP_DROPPABLE is a mapping type of its own, like MAP_PRIVATE
		// (smaps shows it "p"): mmap refuses both at once.
		flags &^= unix.MAP_PRIVATE
	}
	return status, flags, nil
}

// vmFlagsMmap returns the mmap flags among v's VmFlags (mmapVmFlags).
func vmFlagsMmap(v proc.VMA) uint32 {
	var flags uint32
	for f, bit := range mmapVmFlags {
		if v.HasFlag(f) {
			flags |= bit
		}
	}
	return flags
}

// hugetlbFlags returns MAP_HUGETLB with v's page size encoded as mmap
// wants it (log2 of the size at MAP_HUGE_SHIFT) for a hugetlb mapping
// ("ht"), 0 for any other. Only anonymous hugetlb memory and SHM_HUGETLB
// segments are supported: files of a hugetlbfs mount and hugetlb memfds
// are refused.
func hugetlbFlags(v proc.VMA) (uint32, error) {
	if !v.HasFlag("ht") {
		return 0, nil
	}
	if !isAnonHugetlb(v) && !isHugetlbSysV(v) {
		return 0, fmt.Errorf("hugetlb mapping of %s is not supported (only MAP_ANONYMOUS|MAP_HUGETLB and SHM_HUGETLB)", v.Path)
	}
	size := v.KernelPageSize
	if size <= pageSize || size&(size-1) != 0 {
		return 0, fmt.Errorf("hugetlb mapping: KernelPageSize %d is not a huge page size", size)
	}
	return unix.MAP_HUGETLB | uint32(bits.TrailingZeros64(size))<<unix.MAP_HUGE_SHIFT, nil
}

// isAnonHugetlb tells a MAP_ANONYMOUS|MAP_HUGETLB mapping, private or
// shared.
func isAnonHugetlb(v proc.VMA) bool {
	return v.HasFlag("ht") && v.Path == anonHugetlbPath && v.Deleted
}

// isHugetlbSysV tells an attachment of a SysV segment of huge pages: a
// file of the kernel's internal hugetlbfs mount, unlinked, named as
// shmget names the segments' files.
func isHugetlbSysV(v proc.VMA) bool {
	return v.HasFlag("ht") && strings.HasPrefix(v.Path, sysvPrefix) && v.Deleted && v.Shared
}

// sysvPrefix starts the name the kernel gives a SysV segment's file
// (/SYSV and the key in hex).
const sysvPrefix = "/SYSV"

// defaultHugePageSize is x86-64's default huge page size, assumed for an
// image whose MAP_HUGETLB flags carry no size.
const defaultHugePageSize = 2 << 20

// HugePageSize returns the page size of a VMA with these mmap flags: the
// huge page size MAP_HUGE_SHIFT encodes for MAP_HUGETLB, else the base
// page size.
func HugePageSize(flags uint32) uint64 {
	if flags&unix.MAP_HUGETLB == 0 {
		return pageSize
	}
	if shift := flags >> unix.MAP_HUGE_SHIFT & unix.MAP_HUGE_MASK; shift != 0 {
		return 1 << shift
	}
	return defaultHugePageSize
}

// classifyKind tells the status bits and mapping type of v: what backs
// it and whether it is shared.
func (bk Backing) classifyKind(v proc.VMA) (status, flags uint32, err error) {
	status = StatusRegular
	if v.HasFlag("gd") {
		flags |= unix.MAP_GROWSDOWN
	}
	if v.Path == "[stack]" || v.HasFlag("gd") {
		status |= StatusStack
	}
	if v.Path == "[heap]" {
		status |= StatusHeap
	}
	anon := v.Path == "" || v.Path == "[heap]" || v.Path == "[stack]" || isAnonName(v.Path) || isAnonHugetlb(v)
	switch {
	case bk.onShmem(v):
		return bk.classifyShmem(v, status, flags)
	case isHugetlbSysV(v):
		// Like a segment on shmem: the inode number is the segment id.
		return status | StatusAnonShared | StatusSysVIPC, flags | unix.MAP_SHARED | unix.MAP_ANONYMOUS, nil
	case isAnonHugetlb(v) && v.Shared:
		// Like /dev/zero on shmem: the object is the hugetlbfs inode.
		return status | StatusAnonShared, flags | unix.MAP_SHARED | unix.MAP_ANONYMOUS, nil
	case anon && v.Shared:
		return 0, 0, fmt.Errorf("shared anonymous memory is not supported yet")
	case anon:
		return status | StatusAnonPrivate, flags | unix.MAP_PRIVATE | unix.MAP_ANONYMOUS, nil
	case v.Path[0] == '[':
		return 0, 0, fmt.Errorf("special mapping %s is not supported", v.Path)
	case strings.HasPrefix(v.Path, "socket:["):
		// A packet socket's rings, mapped again from the socket: their
		// frames are not saved, as with CRIU (VMA_AREA_SOCKET).
		if v.Shared {
			return status | StatusSocket, flags | unix.MAP_SHARED, nil
		}
		return status | StatusSocket, flags | unix.MAP_PRIVATE, nil
	case strings.HasPrefix(v.Path, "anon_inode:"):
		return 0, 0, fmt.Errorf("mapping of %s is not supported yet", v.Path)
	case v.Deleted && bk.Ghost == nil:
		return 0, 0, fmt.Errorf("mapping of deleted file %s is not supported here", v.Path)
	case v.Shared:
		return status | StatusFileShared, flags | unix.MAP_SHARED, nil
	default:
		return status | StatusFilePrivate, flags | unix.MAP_PRIVATE, nil
	}
}

// onShmem reports whether v maps a file of the kernel's internal shmem
// mount: anonymous shared memory, a memfd or a SysV segment.
func (bk Backing) onShmem(v proc.VMA) bool {
	return bk.ShmemDev != 0 && strings.HasPrefix(v.Path, "/") &&
		v.Major == unix.Major(bk.ShmemDev) && v.Minor == unix.Minor(bk.ShmemDev)
}

// classifyShmem tells the mappings of the internal shmem mount apart by
// the name the kernel gives their file: /SYSV<key> for a SysV segment,
// /memfd:<name> for a memfd, /dev/zero for MAP_SHARED|MAP_ANONYMOUS
// (which, mapped privately too, is dumped as a memfd).
func (bk Backing) classifyShmem(v proc.VMA, status, flags uint32) (uint32, uint32, error) {
	asMemfd := v.Path == AnonShmemPath && bk.ShmemAsMemfd != nil && bk.ShmemAsMemfd(v.Inode)
	switch {
	case asMemfd && v.Shared:
		return status | StatusMemfd | StatusFileShared, flags | unix.MAP_SHARED, nil
	case asMemfd:
		return status | StatusMemfd | StatusFilePrivate, flags | unix.MAP_PRIVATE, nil
	case strings.HasPrefix(v.Path, sysvPrefix) && v.Shared:
		return status | StatusAnonShared | StatusSysVIPC, flags | unix.MAP_SHARED | unix.MAP_ANONYMOUS, nil
	case strings.HasPrefix(v.Path, MemfdPrefix) && v.Shared:
		return status | StatusMemfd | StatusFileShared, flags | unix.MAP_SHARED, nil
	case strings.HasPrefix(v.Path, MemfdPrefix):
		return status | StatusMemfd | StatusFilePrivate, flags | unix.MAP_PRIVATE, nil
	case v.Path == AnonShmemPath && v.Shared:
		return status | StatusAnonShared, flags | unix.MAP_SHARED | unix.MAP_ANONYMOUS, nil
	}
	return 0, 0, fmt.Errorf("mapping of %s (shared %v) on the kernel's internal shmem mount is not supported", v.Path, v.Shared)
}

// MemfdPrefix starts the name the kernel gives a memfd's file.
const MemfdPrefix = "/memfd:"

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

// OpenFlags is how the file behind v must be opened to map it again: a
// shared mapping that is writable, or may be made writable ("mw": the
// file was opened for writing), needs a writable file.
func OpenFlags(v proc.VMA) uint32 {
	if v.Shared && (v.Prot&unix.PROT_WRITE != 0 || v.HasFlag("mw")) {
		return unix.O_RDWR
	}
	return unix.O_RDONLY
}

// HasContents reports whether the pages of a VMA of this status are
// saved in the task's pages image: private memory only. The vdso block is
// the kernel's, shared file pages live in their file and shared memory
// objects in pagemap-shmem images of their own.
func HasContents(status uint32) bool {
	if status&(StatusVdso|StatusVvar|StatusVsyscall) != 0 {
		return false
	}
	return status&(StatusAnonPrivate|StatusFilePrivate) != 0
}
