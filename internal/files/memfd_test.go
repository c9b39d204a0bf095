package files

import (
	"slices"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/memfd"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/mem"
	"amber/internal/plan"
)

var memfdImg = image.DirAt("/img").File("pages-9.img")

// memfdImages has one memfd inode (id 1) of size bytes whose first three
// pages are saved.
func memfdImages(size uint64, seals uint32) *MemfdImages {
	return &MemfdImages{
		Inodes: map[uint32]*memfd.MemfdInodeEntry{1: {Name: proto.String("amber test"), Uid: proto.Uint32(0),
			Gid: proto.Uint32(0), Size: proto.Uint64(size), Shmid: proto.Uint32(4711), Seals: proto.Uint32(seals),
			InodeId: proto.Uint64(1), Mode: proto.Uint32(0o100755)}},
		Pages: map[uint32]*mem.ShmemPages{1: {Path: memfdImg, Pagemap: []*pagemap.PagemapEntry{{Vaddr: proto.Uint64(0),
			NrPages: proto.Uint64(3), CompatNrPages: proto.Uint32(3), Flags: proto.Uint32(mem.PEPresent)}}}},
	}
}

// memfd adds an open file of memfd inode 1.
func (l *layout) memfd(flags uint32, pos uint64) uint32 {
	id := l.nextID()
	l.in.Files[id] = &fdinfo.FileEntry{Type: fdinfo.FdTypes_MEMFD.Enum(), Id: proto.Uint32(id), Memfd: &memfd.MemfdFileEntry{
		Id: proto.Uint32(id), Flags: proto.Uint32(flags), Pos: proto.Uint64(pos), Fown: newFown(), InodeId: proto.Uint32(1)}}
	return id
}

// runMemfds plans l's table with the memfd planner m, after memory (the
// memory plan's part, if any), then m's final section, and runs it in a
// task that starts with stdio.
func runMemfds(t *testing.T, l *layout, m *Memfds, memory func(b *plan.Builder)) (*fdSim, *plan.Program) {
	t.Helper()
	b := plan.NewBuilder(testBase, 0)
	b.CloseAll()
	if memory != nil {
		memory(b)
	}
	l.in.Memfds = m
	r, err := PlanFds(b, l.in)
	if err != nil {
		t.Fatalf("PlanFds: %v", err)
	}
	m.Finish(b)
	ClosePlan(b, r)
	p := b.Finish()
	s := newFdSim(junk(0, 1, 2))
	for pid, table := range l.others {
		s.others[pid] = table
	}
	if err := s.run(p); err != nil {
		t.Fatalf("%v\nplan:\n%s", err, p)
	}
	return s, p
}

func count(p *plan.Program, nr uintptr) int {
	n := 0
	for _, c := range p.Calls {
		if c.Nr == nr {
			n++
		}
	}
	return n
}

// checkOnly requires the task to have exactly fds open.
func checkOnly(t *testing.T, s *fdSim, fds ...int) {
	t.Helper()
	var got []int
	for fd := range s.fds {
		got = append(got, fd)
	}
	slices.Sort(got)
	if !slices.Equal(got, fds) {
		t.Errorf("open fds %v, want %v:\n%s", got, fds, s.dump())
	}
}

// TestMemfdOpenFiles: a memfd open twice (and dup'ed) is made once, with
// its contents, size, mode and, last of all, its seals; the read-write
// file gets the description memfd_create made, the read-only one a
// reopen, each at its position.
func TestMemfdOpenFiles(t *testing.T) {
	l := newLayout()
	f, g := l.memfd(unix.O_RDWR|unix.O_LARGEFILE, 777), l.memfd(unix.O_RDONLY|unix.O_LARGEFILE, 5)
	l.fd(3, f, false).fd(4, g, true).fd(5, f, false)
	m := NewMemfds(memfdImages(12345, unix.F_SEAL_GROW|unix.F_SEAL_SHRINK), l.in.Files, SafeFd(l.in.Fds, nil), nil)
	s, p := runMemfds(t, l, m, nil)
	checkOnly(t, s, 3, 4, 5)
	d3, d4, d5 := s.fds[3], s.fds[4], s.fds[5]
	if d3.f != d5.f || d3.f == d4.f || d3.f.mfd == nil || d3.f.mfd != d4.f.mfd {
		t.Fatalf("fds 3, 4, 5 are %v, %v, %v: want 3 and 5 one description, 4 another, of one memfd", d3.f, d4.f, d5.f)
	}
	mf := d3.f.mfd
	if d3.f != mf.orig {
		t.Errorf("the read-write file is a reopen, not memfd_create's description")
	}
	if d3.f.flags&unix.O_ACCMODE != unix.O_RDWR || d4.f.flags&unix.O_ACCMODE != unix.O_RDONLY || !d4.cloexec || d3.cloexec {
		t.Errorf("flags %#x (cloexec %v) and %#x (cloexec %v), want O_RDWR and O_RDONLY|FD_CLOEXEC", d3.f.flags, d3.cloexec, d4.f.flags, d4.cloexec)
	}
	if d3.f.pos != 777 || d4.f.pos != 5 {
		t.Errorf("positions %d and %d, want 777 and 5", d3.f.pos, d4.f.pos)
	}
	if mf.name != "amber test" || mf.size != 12345 || mf.mode != 0o755 || !mf.sealable {
		t.Errorf("memfd %q size %d mode %#o sealable %v, want \"amber test\" 12345 0755 true", mf.name, mf.size, mf.mode, mf.sealable)
	}
	if want := []string{"0x0+0x3000<-" + memfdImg.String() + "+0x0"}; !slices.Equal(mf.writes, want) {
		t.Errorf("writes %v, want %v", mf.writes, want)
	}
	if mf.seals != unix.F_SEAL_GROW|unix.F_SEAL_SHRINK || !mf.sealedLast {
		t.Errorf("seals %#x (after all else: %v), want GROW|SHRINK last", mf.seals, mf.sealedLast)
	}
	if n := count(p, unix.SYS_MEMFD_CREATE); n != 1 {
		t.Errorf("%d memfd_create calls, want 1", n)
	}
}

// TestMemfdMappedThenOpen: the memory plan makes the memfd for a mapping
// and keeps it above every target; the descriptor plan takes it over for
// the read-write file instead of making another; a read-only mapping
// gets a read-only descriptor. All are closed in the end.
func TestMemfdMappedThenOpen(t *testing.T) {
	l := newLayout()
	mapID, f := l.memfd(unix.O_RDONLY, 0), l.memfd(unix.O_RDWR, 0)
	l.fd(0, f, false).fd(7, f, false)
	safe := SafeFd(l.in.Fds, nil)
	m := NewMemfds(memfdImages(3*4096, 0), l.in.Files, safe, nil)
	var rw, ro int
	s, p := runMemfds(t, l, m, func(b *plan.Builder) {
		var err error
		if rw, err = m.MapFd(b, mapID, unix.O_RDWR); err != nil {
			t.Fatal(err)
		}
		if ro, err = m.MapFd(b, mapID, unix.O_RDONLY); err != nil {
			t.Fatal(err)
		}
		b.Call("map it", unix.SYS_MMAP, 0x10000, 0x1000, unix.PROT_READ, unix.MAP_SHARED, uint64(ro), 0)
	})
	if rw < safe || ro < safe || rw == ro {
		t.Errorf("mapping descriptors %d and %d, want two at or above %d", rw, ro, safe)
	}
	checkOnly(t, s, 0, 7)
	if s.fds[0].f != s.fds[0].f.mfd.orig || s.fds[7].f != s.fds[0].f {
		t.Errorf("fds 0 and 7 are %v, %v: want memfd_create's description", s.fds[0].f, s.fds[7].f)
	}
	if n := count(p, unix.SYS_MEMFD_CREATE); n != 1 {
		t.Errorf("%d memfd_create calls, want 1", n)
	}
	if !strings.Contains(p.String(), "read-only") {
		t.Errorf("no read-only descriptor for the read-only mapping:\n%s", p)
	}
	if held := m.Held(); held[1] != rw {
		t.Errorf("Held %v, want inode 1 at %d", held, rw)
	}
}

// TestMemfdFromHolder: a memfd an earlier task holds is reopened from
// it, not made again, and not sealed again.
func TestMemfdFromHolder(t *testing.T) {
	l := newLayout()
	g := l.memfd(unix.O_RDONLY, 3)
	l.fd(2, g, false)
	mf := &simMemfd{name: "amber test", sealable: true, seals: unix.F_SEAL_WRITE}
	l.others[77] = map[int]*simFile{300: {kind: "memfd", mfd: mf, flags: unix.O_RDWR}}
	m := NewMemfds(memfdImages(4096, unix.F_SEAL_WRITE), l.in.Files, SafeFd(l.in.Fds, nil),
		func(ino uint32) (Holder, bool) { return Holder{Pid: 77, Fd: 300}, ino == 1 })
	s, p := runMemfds(t, l, m, nil)
	checkOnly(t, s, 2)
	if d := s.fds[2]; d.f.mfd != mf || d.f.flags&unix.O_ACCMODE != unix.O_RDONLY || d.f.pos != 3 {
		t.Errorf("fd 2 is %v flags %#x pos %d, want the holder's memfd read-only at 3", d.f, d.f.flags, d.f.pos)
	}
	if count(p, unix.SYS_MEMFD_CREATE) != 0 || mf.sealedLast || len(mf.writes) != 0 {
		t.Errorf("the held memfd was made, written or sealed again:\n%s", p)
	}
}

// TestMemfdWithoutSealing: a memfd made without MFD_ALLOW_SEALING (its
// seals read F_SEAL_SEAL) is made so again, and not sealed.
func TestMemfdWithoutSealing(t *testing.T) {
	l := newLayout()
	l.fd(3, l.memfd(unix.O_RDWR, 0), false)
	m := NewMemfds(memfdImages(100, unix.F_SEAL_SEAL), l.in.Files, SafeFd(l.in.Fds, nil), nil)
	s, p := runMemfds(t, l, m, nil)
	mf := s.fds[3].f.mfd
	if mf == nil || mf.sealable || mf.seals != unix.F_SEAL_SEAL || mf.size != 100 {
		t.Errorf("memfd %+v, want unsealable, size 100", mf)
	}
	for _, c := range p.Calls {
		if c.Nr == unix.SYS_FCNTL && c.Args[1] == unix.F_ADD_SEALS {
			t.Errorf("sealed: %s", c.What)
		}
	}
}

// TestMemfdMissingInode: an open file of a memfd memfd.img lacks is an
// error naming the inode.
func TestMemfdMissingInode(t *testing.T) {
	l := newLayout()
	l.fd(3, l.memfd(unix.O_RDWR, 0), false)
	l.in.Memfds = NewMemfds(&MemfdImages{}, l.in.Files, 4, nil)
	b := plan.NewBuilder(testBase, 0)
	b.CloseAll()
	if _, err := PlanFds(b, l.in); err == nil || !strings.Contains(err.Error(), "inode 1") {
		t.Errorf("err %v, want one naming memfd inode 1", err)
	}
}
