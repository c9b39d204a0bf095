package mem

import (
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/proc"
)

const huge2M = unix.MAP_HUGETLB | 21<<unix.MAP_HUGE_SHIFT

// TestEntriesVmFlags: the mmap flags and madvise advice smaps shows in
// VmFlags are recorded as CRIU's parse_vmflags records them.
func TestEntriesVmFlags(t *testing.T) {
	for _, c := range []struct {
		name   string
		v      proc.VMA
		status uint32
		flags  uint32
		madv   uint64
	}{
		{"locked sequential", proc.VMA{VmFlags: []string{"rd", "wr", "mr", "mw", "me", "lo", "sr", "ac"}},
			StatusRegular | StatusAnonPrivate, anP | unix.MAP_LOCKED, 1 << unix.MADV_SEQUENTIAL},
		{"noreserve random", proc.VMA{VmFlags: []string{"rd", "wr", "rr", "nr"}},
			StatusRegular | StatusAnonPrivate, anP | unix.MAP_NORESERVE, 1 << unix.MADV_RANDOM},
		{"droppable", proc.VMA{VmFlags: []string{"rd", "wr", "mr", "mw", "me", "nr", "wf", "dd", "dp"}},
			StatusRegular | StatusAnonPrivate, unix.MAP_ANONYMOUS | unix.MAP_DROPPABLE | unix.MAP_NORESERVE,
			1<<unix.MADV_WIPEONFORK | 1<<unix.MADV_DONTDUMP},
		{"locked stack", proc.VMA{Path: "[stack]", VmFlags: []string{"gd", "lo"}},
			StatusRegular | StatusStack | StatusAnonPrivate, anP | unix.MAP_GROWSDOWN | unix.MAP_LOCKED, 0},
		{"locked file", proc.VMA{Path: "/lib/x.so", VmFlags: []string{"rd", "ex", "lo"}},
			StatusRegular | StatusFilePrivate, unix.MAP_PRIVATE | unix.MAP_LOCKED, 0},
		{"hugetlb private", proc.VMA{Path: "/anon_hugepage", Deleted: true, Minor: 0x11, Inode: 9,
			KernelPageSize: 2 << 20, VmFlags: []string{"rd", "wr", "mr", "mw", "me", "de", "ht"}},
			StatusRegular | StatusAnonPrivate, anP | huge2M, 0},
		{"hugetlb 1G private", proc.VMA{Path: "/anon_hugepage", Deleted: true, KernelPageSize: 1 << 30,
			VmFlags: []string{"ht"}},
			StatusRegular | StatusAnonPrivate, anP | unix.MAP_HUGETLB | 30<<unix.MAP_HUGE_SHIFT, 0},
		{"hugetlb shared", proc.VMA{Shared: true, Path: "/anon_hugepage", Deleted: true, Minor: 0x11, Inode: 9,
			Offset: 0x200000, KernelPageSize: 2 << 20, VmFlags: []string{"rd", "wr", "sh", "mr", "mw", "me", "ms", "de", "ht"}},
			StatusRegular | StatusAnonShared, unix.MAP_SHARED | unix.MAP_ANONYMOUS | huge2M, 0},
		{"SHM_HUGETLB segment", proc.VMA{Shared: true, Path: "/SYSV4855abcd", Deleted: true, Minor: 0x12, Inode: 32768,
			KernelPageSize: 2 << 20, VmFlags: []string{"rd", "wr", "sh", "mr", "mw", "me", "ms", "de", "ht"}},
			StatusRegular | StatusAnonShared | StatusSysVIPC, unix.MAP_SHARED | unix.MAP_ANONYMOUS | huge2M, 0},
		{"vvar keeps no flags", proc.VMA{Path: "[vvar]", VmFlags: []string{"rd", "mr", "pf", "io", "de", "dd"}},
			StatusRegular | StatusVvar | StatusAnonPrivate, anP, 1 << unix.MADV_DONTDUMP},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.v.Start, c.v.End, c.v.Prot = 0x7f00_0000_0000, 0x7f00_0040_0000, rw
			out, err := Entries([]proc.VMA{c.v}, func(proc.VMA) (uint32, error) { return 5, nil })
			if err != nil {
				t.Fatal(err)
			}
			e := out[0]
			if e.GetStatus() != c.status || e.GetFlags() != c.flags || e.GetMadv() != c.madv {
				t.Errorf("status %#x flags %#x madv %#x, want %#x %#x %#x",
					e.GetStatus(), e.GetFlags(), e.GetMadv(), c.status, c.flags, c.madv)
			}
			if c.status&StatusAnonShared != 0 && (e.GetShmid() != c.v.Inode || e.GetPgoff() != c.v.Offset) {
				t.Errorf("shmid %d pgoff %#x, want the inode %d and offset %#x", e.GetShmid(), e.GetPgoff(), c.v.Inode, c.v.Offset)
			}
			if HasContents(e.GetStatus()) != (c.status&StatusAnonShared == 0 && c.status&StatusVvar == 0) {
				t.Errorf("HasContents %v", HasContents(e.GetStatus()))
			}
		})
	}
}

// TestEntriesHugetlbErrors: hugetlb memory other than MAP_ANONYMOUS and
// SHM_HUGETLB segments (unlinked files named /SYSV...), or
// without a huge page size, is refused naming what it is.
func TestEntriesHugetlbErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		v    proc.VMA
		want string
	}{
		{"hugetlbfs file", proc.VMA{Shared: true, Path: "/mnt/huge/f", KernelPageSize: 2 << 20, VmFlags: []string{"ht"}},
			"hugetlb mapping of /mnt/huge/f"},
		{"hugetlbfs file named like a segment", proc.VMA{Shared: true, Path: "/SYSV00000001", KernelPageSize: 2 << 20, VmFlags: []string{"ht"}},
			"hugetlb mapping of /SYSV00000001"},
		{"no page size", proc.VMA{Path: "/anon_hugepage", Deleted: true, VmFlags: []string{"ht"}},
			"KernelPageSize 0"},
		{"base page size", proc.VMA{Path: "/anon_hugepage", Deleted: true, KernelPageSize: 4096, VmFlags: []string{"ht"}},
			"KernelPageSize 4096"},
	} {
		c.v.Start, c.v.End = 0x7f00_0000_0000, 0x7f00_0020_0000
		_, err := Entries([]proc.VMA{c.v}, func(proc.VMA) (uint32, error) { return 1, nil })
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "7f0000000000-7f0000200000") {
			t.Errorf("%s: err %v, want one naming the VMA and %q", c.name, err, c.want)
		}
	}
}

func TestHugePageSize(t *testing.T) {
	for _, c := range []struct {
		flags uint32
		want  uint64
	}{
		{anP, pageSize},
		{anP | huge2M, 2 << 20},
		{anP | unix.MAP_HUGETLB | 30<<unix.MAP_HUGE_SHIFT, 1 << 30},
		{anP | unix.MAP_HUGETLB, defaultHugePageSize},
		{anP | 21<<unix.MAP_HUGE_SHIFT, pageSize}, // size bits without MAP_HUGETLB mean nothing
	} {
		if got := HugePageSize(c.flags); got != c.want {
			t.Errorf("HugePageSize(%#x) = %d, want %d", c.flags, got, c.want)
		}
	}
}

// TestSavedAtDumpDroppable: a MAP_DROPPABLE mapping's pages are not
// saved (CRIU does not save them either); a private one's are.
func TestSavedAtDumpDroppable(t *testing.T) {
	private := &vma.VmaEntry{Status: proto.Uint32(StatusRegular | StatusAnonPrivate), Flags: proto.Uint32(unix.MAP_PRIVATE | unix.MAP_ANONYMOUS)}
	droppable := &vma.VmaEntry{Status: proto.Uint32(StatusRegular | StatusAnonPrivate), Flags: proto.Uint32(unix.MAP_DROPPABLE | unix.MAP_ANONYMOUS)}
	if !savedAtDump(private) {
		t.Error("private anonymous mapping: pages not saved")
	}
	if savedAtDump(droppable) {
		t.Error("MAP_DROPPABLE mapping: pages saved")
	}
}
