package mem

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"amber/internal/proc"
)

// TestEntriesSharedMemory: mappings of the kernel's shmem mount are told
// apart by their file's name; the same names elsewhere, or without a
// known shmem device, are not shared memory.
func TestEntriesSharedMemory(t *testing.T) {
	dev := unix.Mkdev(0, 1)
	bk := Backing{ShmemDev: dev, Memfd: func(proc.VMA) (uint32, error) { return 42, nil }}
	mw := []string{"rd", "sh", "mr", "mw", "me", "ms"}
	asMemfd := bk
	asMemfd.ShmemAsMemfd = func(ino uint64) bool { return ino == 7 }
	for _, c := range []struct {
		name    string
		v       proc.VMA
		bk      Backing
		status  uint32
		flags   uint32
		shmid   uint64
		fdflags uint32 // checked when set
		err     string
	}{
		{name: "anon shared", v: proc.VMA{Shared: true, Path: "/dev/zero", Deleted: true, Minor: 1, Inode: 1234, Offset: 0x2000},
			bk: bk, status: StatusRegular | StatusAnonShared, flags: unix.MAP_SHARED | unix.MAP_ANONYMOUS, shmid: 1234},
		{name: "memfd shared", v: proc.VMA{Shared: true, Prot: rw, Path: "/memfd:a b", Deleted: true, Minor: 1, Inode: 7},
			bk: bk, status: StatusRegular | StatusMemfd | StatusFileShared, flags: unix.MAP_SHARED, shmid: 42, fdflags: unix.O_RDWR},
		{name: "memfd private", v: proc.VMA{Prot: rw, Path: "/memfd:x", Deleted: true, Minor: 1, Inode: 7},
			bk: bk, status: StatusRegular | StatusMemfd | StatusFilePrivate, flags: unix.MAP_PRIVATE, shmid: 42, fdflags: unix.O_RDONLY},
		{name: "sysv rw", v: proc.VMA{Shared: true, Prot: ro, Path: "/SYSV00001234", Deleted: true, Minor: 1, Inode: 3, VmFlags: mw},
			bk: bk, status: StatusRegular | StatusAnonShared | StatusSysVIPC, flags: unix.MAP_SHARED | unix.MAP_ANONYMOUS, shmid: 3, fdflags: unix.O_RDWR},
		{name: "sysv ro", v: proc.VMA{Shared: true, Prot: ro, Path: "/SYSV00001234", Deleted: true, Minor: 1, Inode: 3, VmFlags: []string{"rd", "sh"}},
			bk: bk, status: StatusRegular | StatusAnonShared | StatusSysVIPC, flags: unix.MAP_SHARED | unix.MAP_ANONYMOUS, shmid: 3, fdflags: unix.O_RDONLY},
		{name: "no shmem device", v: proc.VMA{Shared: true, Path: "/dev/zero", Deleted: true, Minor: 1, Inode: 1234},
			bk: Backing{}, err: "deleted file"},
		{name: "other device", v: proc.VMA{Shared: true, Path: "/dev/zero", Deleted: true, Minor: 5, Inode: 1234},
			bk: bk, err: "deleted file"},
		{name: "no memfd dumper", v: proc.VMA{Shared: true, Path: "/memfd:x", Deleted: true, Minor: 1, Inode: 7},
			bk: Backing{ShmemDev: dev}, err: "no way to dump"},
		{name: "private shmem file", v: proc.VMA{Path: "/dev/zero", Deleted: true, Minor: 1, Inode: 7},
			bk: bk, err: "internal shmem mount"},
		{name: "anon shared as memfd, private", v: proc.VMA{Prot: rw, Path: "/dev/zero", Deleted: true, Minor: 1, Inode: 7, Offset: 0x1000},
			bk: asMemfd, status: StatusRegular | StatusMemfd | StatusFilePrivate, flags: unix.MAP_PRIVATE, shmid: 42, fdflags: unix.O_RDONLY},
		{name: "anon shared as memfd, shared", v: proc.VMA{Shared: true, Prot: rw, Path: "/dev/zero", Deleted: true, Minor: 1, Inode: 7, VmFlags: mw},
			bk: asMemfd, status: StatusRegular | StatusMemfd | StatusFileShared, flags: unix.MAP_SHARED, shmid: 42, fdflags: unix.O_RDWR},
		{name: "anon shared, another object", v: proc.VMA{Shared: true, Path: "/dev/zero", Deleted: true, Minor: 1, Inode: 8},
			bk: asMemfd, status: StatusRegular | StatusAnonShared, flags: unix.MAP_SHARED | unix.MAP_ANONYMOUS, shmid: 8},
	} {
		c.v.Start, c.v.End = 0x10000, 0x12000
		out, err := c.bk.Entries([]proc.VMA{c.v})
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want one saying %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		e := out[0]
		if e.GetStatus() != c.status || e.GetFlags() != c.flags || e.GetShmid() != c.shmid || e.GetPgoff() != c.v.Offset {
			t.Errorf("%s: status %#x flags %#x shmid %d pgoff %#x, want %#x %#x %d %#x", c.name,
				e.GetStatus(), e.GetFlags(), e.GetShmid(), e.GetPgoff(), c.status, c.flags, c.shmid, c.v.Offset)
		}
		if c.fdflags != 0 || e.Fdflags != nil {
			if e.GetFdflags() != c.fdflags {
				t.Errorf("%s: fdflags %#x, want %#x", c.name, e.GetFdflags(), c.fdflags)
			}
		}
		if HasContents(e.GetStatus()) != (c.status&StatusFilePrivate != 0) {
			t.Errorf("%s: HasContents %v", c.name, HasContents(e.GetStatus()))
		}
	}
}

// TestPrivateShmem: only private mappings of anonymous shared memory on
// the shmem device name their object.
func TestPrivateShmem(t *testing.T) {
	dev := unix.Mkdev(0, 1)
	vmas := []proc.VMA{
		{Shared: true, Path: "/dev/zero", Deleted: true, Minor: 1, Inode: 5},
		{Path: "/dev/zero", Deleted: true, Minor: 1, Inode: 6},
		{Path: "/dev/zero", Deleted: true, Minor: 2, Inode: 7},
		{Path: "/memfd:x", Deleted: true, Minor: 1, Inode: 8},
		{Path: "/dev/zero", Deleted: true, Minor: 1, Inode: 9},
	}
	got := PrivateShmem(vmas, dev)
	if len(got) != 2 || got[0] != 6 || got[1] != 9 {
		t.Errorf("PrivateShmem = %v, want [6 9]", got)
	}
}
