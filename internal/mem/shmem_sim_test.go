package mem

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/plan"
	"amber/internal/proc"
)

// This file models shared memory for memSim: the objects
// mmap(MAP_SHARED|MAP_ANONYMOUS) makes, named shmem#N, which the plan
// reaches again through /proc/self/map_files (opening a mapping's link
// opens the object it maps); what preadv writes into each; and shmat of
// SysV segments, named sysv#ID.

// shmSim is memSim's shared memory.
type shmSim struct {
	n      int
	images map[string]bool      // pages images of shared memory preadv may read
	fills  map[string][]objFill // what preadv wrote into each object
	sysv   map[uint64]uint64    // segment sizes, by id
}

// objFill is a range of an object a preadv wrote, from img at imgOff.
type objFill struct {
	img            string
	off, len, from uint64
}

func (m *shmSim) create() string {
	m.n++
	return fmt.Sprintf("shmem#%d", m.n)
}

// resolve is what openat of path opens: for /proc/self/map_files/A-B,
// what the mapping A-B maps (only a whole mapping has a link).
func (m *shmSim) resolve(s *memSim, path string) string {
	var a, b uint64
	if n, _ := fmt.Sscanf(path, "/proc/self/map_files/%x-%x", &a, &b); n != 2 {
		return path
	}
	segs, ok := s.covered(a, b)
	if !ok || len(segs) != 1 || segs[0].start != a || segs[0].end != b {
		return "ENOENT " + path
	}
	return segs[0].what
}

// filled records a preadv from img into the objects mapped at segs.
func (m *shmSim) filled(segs []seg, img string, f fill) {
	if m.fills == nil {
		m.fills = map[string][]objFill{}
	}
	for _, g := range segs {
		lo, hi := max(g.start, f.addr), min(g.end, f.addr+f.len)
		m.fills[g.what] = append(m.fills[g.what], objFill{img, lo - g.start + g.off, hi - lo, f.off + lo - f.addr})
	}
}

// shmat attaches a whole segment at an address nothing maps.
func (s *memSim) shmat(a [6]uint64) error {
	id, addr, flags := a[0], a[1], a[2]
	size := pageUp(s.shm.sysv[id])
	if size == 0 || !aligned(addr) {
		return fmt.Errorf("shmat %d at %#x: %w", id, addr, unix.EINVAL)
	}
	if i := s.find(addr); i < len(s.segs) && s.segs[i].start < addr+size {
		return fmt.Errorf("shmat %d at %#x over %v: %w", id, addr, s.segs[i], unix.EINVAL)
	}
	prot := uint64(unix.PROT_READ | unix.PROT_WRITE)
	if flags&unix.SHM_RDONLY != 0 {
		prot = unix.PROT_READ
	}
	if flags&shmExec != 0 {
		prot |= unix.PROT_EXEC
	}
	s.insert(seg{start: addr, end: addr + size, prot: prot, flags: unix.MAP_SHARED, what: fmt.Sprintf("sysv#%d", id)})
	return nil
}

const (
	testShmemDev = 1 // 0:1, the shmem mount of this test machine
	testPid      = 1000
	shmImg       = "/img/pages-7.img"
)

// sharedVMAs are the entries dump makes of MAP_SHARED|MAP_ANONYMOUS
// mappings of one object (inode ino) at its offsets.
func sharedVMA(start, pages uint64, prot int, ino, pgoff uint64) *vma.VmaEntry {
	v := proc.VMA{Start: start, End: start + pages*page, Prot: prot, Shared: true, Offset: pgoff,
		Minor: testShmemDev, Inode: ino, Path: "/dev/zero", Deleted: true}
	out, err := Backing{ShmemDev: unix.Mkdev(0, testShmemDev)}.Entries([]proc.VMA{v})
	if err != nil {
		panic(err)
	}
	return out[0]
}

// shmemObject is an object of size pages whose pages image holds pm.
func shmemObject(id, pages uint64, creator int, at Run, pm ...*pagemap.PagemapEntry) *Shmem {
	return &Shmem{ID: id, Size: pages * page, Pages: &ShmemPages{Path: image.DirAt("/img").File("pages-7.img"), Pagemap: pm}, Creator: creator, At: at}
}

// planShared plans in, which maps shared memory, and runs the plan.
func planShared(t *testing.T, in *RestoreInput, sysv map[uint64]uint64) (*memSim, *plan.Program) {
	t.Helper()
	in.Pid = testPid
	in.Scratch = Run{testScratch, testScratch + scratchLen}
	s, p := planMemWith(t, in, func(s *memSim) {
		s.shm.images = map[string]bool{shmImg: true}
		s.shm.sysv = sysv
	})
	if t.Failed() {
		t.Logf("plan:\n%s\nlayout:\n%s", p, s.layout())
	}
	return s, p
}

// segAt returns the model's mapping starting at addr.
func segAt(t *testing.T, s *memSim, addr uint64) seg {
	t.Helper()
	if i := s.find(addr); i < len(s.segs) && s.segs[i].start == addr {
		return s.segs[i]
	}
	t.Fatalf("nothing mapped at %#x:\n%s", addr, s.layout())
	return seg{}
}

// checkFdsClosed requires the plan to leave only the descriptors the
// model started with.
func checkFdsClosed(t *testing.T, s *memSim) {
	t.Helper()
	for fd, what := range s.fds {
		if fd > 2 && what != "leak" {
			t.Errorf("fd %d (%s) left open", fd, what)
		}
	}
}

// TestPlanSharedInPlace: the creator of an object its one mapping covers
// makes it with that mapping and fills it there; read-only mappings get
// their protection after the fill.
func TestPlanSharedInPlace(t *testing.T) {
	const a, b = 0x1000_0000, 0x2000_0000
	vmas := append([]*vma.VmaEntry{sharedVMA(a, 4, rw, 77, 0), sharedVMA(b, 1, ro, 78, 0)}, dumpedVdso(dumpVdso)...)
	in := memInput(vmas, nil)
	in.Shmem = map[uint64]*Shmem{
		77: shmemObject(77, 4, testPid, Run{a, a + 4*page}, present(0, 1), present(3*page, 1)),
		78: shmemObject(78, 1, testPid, Run{b, b + page}, present(0, 1)),
	}
	s, _ := planShared(t, in, nil)
	ga, gb := segAt(t, s, a), segAt(t, s, b)
	if ga.end != a+4*page || ga.prot != rw || ga.flags != unix.MAP_SHARED|unix.MAP_ANONYMOUS || !strings.HasPrefix(ga.what, "shmem#") {
		t.Errorf("area a is %v, want 4 pages rw of a new MAP_SHARED|MAP_ANONYMOUS object", ga)
	}
	if gb.prot != ro || gb.what == ga.what {
		t.Errorf("area b is %v, want a read-only object of its own", gb)
	}
	want := []objFill{{shmImg, 0, page, 0}, {shmImg, 3 * page, page, page}}
	if got := s.shm.fills[ga.what]; !slices.Equal(got, want) {
		t.Errorf("object 77 filled with %v, want %v", got, want)
	}
	if got := s.shm.fills[gb.what]; len(got) != 1 || got[0].off != 0 {
		t.Errorf("object 78 filled with %v, want its page", got)
	}
	checkFdsClosed(t, s)
}

// TestPlanSharedSplit: an object whose mappings mprotect split (or that
// is mapped several times) is made in a hole, filled, and each mapping
// made from its file at its offset; the hole is empty again after.
func TestPlanSharedSplit(t *testing.T) {
	const a = 0x1000_0000
	vmas := []*vma.VmaEntry{sharedVMA(a, 1, rw, 77, 0), sharedVMA(a+page, 1, ro, 77, page), sharedVMA(a+2*page, 2, rw, 77, 2*page)}
	vmas = append(vmas, dumpedVdso(dumpVdso)...)
	in := memInput(vmas, nil)
	in.Shmem = map[uint64]*Shmem{77: shmemObject(77, 4, testPid, Run{a, a + page}, present(page, 2))}
	s, _ := planShared(t, in, nil)
	obj := segAt(t, s, a).what
	for i, want := range []struct {
		start, end, prot, off uint64
	}{{a, a + page, rw, 0}, {a + page, a + 2*page, ro, page}, {a + 2*page, a + 4*page, rw, 2 * page}} {
		g := segAt(t, s, want.start)
		if g.end != want.end || g.prot != want.prot || g.off != want.off || g.what != obj || !strings.HasPrefix(obj, "shmem#") {
			t.Errorf("mapping %d is %v, want %x-%x prot %d offset %#x of one object", i, g, want.start, want.end, want.prot, want.off)
		}
	}
	n := 0
	for _, g := range s.segs {
		if g.what == obj {
			n++
		}
	}
	if n != 3 {
		t.Errorf("object mapped %d times, want 3 (the temporary mapping left behind?):\n%s", n, s.layout())
	}
	if want := []objFill{{shmImg, page, 2 * page, 0}}; !slices.Equal(s.shm.fills[obj], want) {
		t.Errorf("object filled with %v, want %v", s.shm.fills[obj], want)
	}
	checkFdsClosed(t, s)
}

// TestPlanSharedNotCreator: a task that maps an object another task
// creates maps the creator's, opened through /proc/CREATOR/map_files, and
// fills nothing.
func TestPlanSharedNotCreator(t *testing.T) {
	const a, creator = 0x1000_0000, 999
	at := Run{0x7000_0000, 0x7000_4000}
	vmas := append([]*vma.VmaEntry{sharedVMA(a, 2, rw, 77, 0), sharedVMA(a+2*page, 2, ro, 77, 2*page)}, dumpedVdso(dumpVdso)...)
	in := memInput(vmas, nil)
	in.Shmem = map[uint64]*Shmem{77: shmemObject(77, 4, creator, at, present(0, 4))}
	s, _ := planShared(t, in, nil)
	path := fmt.Sprintf("/proc/%d/map_files/%x-%x", creator, at.Start, at.End)
	if g := segAt(t, s, a); g.what != path || g.off != 0 || g.prot != rw {
		t.Errorf("first mapping %v, want %s at offset 0", g, path)
	}
	if g := segAt(t, s, a+2*page); g.what != path || g.off != 2*page || g.prot != ro {
		t.Errorf("second mapping %v, want %s at offset 2 pages", g, path)
	}
	if s.opens[path] != 1 || len(s.shm.fills) != 0 {
		t.Errorf("opened %s %d times, filled %v: want one open and no fill", path, s.opens[path], s.shm.fills)
	}
	checkFdsClosed(t, s)
}

// TestPlanSharedKept: a child keeps the shared mapping it inherited as
// it is: no mmap, no fill, no MADV_DONTNEED there, even when the parent's
// pagemap (wrongly) lists pages in it.
func TestPlanSharedKept(t *testing.T) {
	const a, c = 0x1000_0000, 0x3000_0000
	parentVMAs := append([]*vma.VmaEntry{sharedVMA(a, 4, rw, 77, 0), anonVMA(c, 1, rw)}, dumpedVdso(dumpVdso)...)
	childVMAs := append([]*vma.VmaEntry{sharedVMA(a, 4, rw, 77, 0), anonVMA(c, 1, rw)}, dumpedVdso(dumpVdso)...)
	in := memInput(childVMAs, []*pagemap.PagemapEntry{present(c, 1)})
	in.Parent = &Parent{MM: &mm.MmEntry{Vmas: parentVMAs}, Pagemap: []*pagemap.PagemapEntry{present(a, 4), present(c, 1)}}
	in.Current = append([]proc.VMA{{Start: a, End: a + 4*page, Prot: rw, Shared: true, Path: "/dev/zero"},
		{Start: c, End: c + page, Prot: rw}}, kernelVdso(dumpVdso)...)
	in.Shmem = map[uint64]*Shmem{77: shmemObject(77, 4, 1, Run{a, a + 4*page}, present(0, 4))}
	s, p := planShared(t, in, nil)
	if g := segAt(t, s, a); !g.inherited || g.end != a+4*page {
		t.Errorf("shared mapping %v was not kept", g)
	}
	for _, c := range p.Calls {
		if c.Args[0] >= a && c.Args[0] < a+4*page {
			t.Errorf("call touches the kept shared mapping: %s %s", plan.SyscallName(c.Nr), c.What)
		}
	}
	if len(s.shm.fills) != 0 || len(s.dropped) != 0 {
		t.Errorf("fills %v, dropped %v: want none", s.shm.fills, s.dropped)
	}
}

// TestPlanSysV: an attachment split by mprotect is attached once at its
// first VMA and the rest protected; a read-only one attaches with
// SHM_RDONLY; executable VMAs ask for SHM_EXEC.
func TestPlanSysV(t *testing.T) {
	const a, b = 0x1000_0000, 0x2000_0000
	sysv := func(start, pages uint64, prot int, id, pgoff uint64, rdonly bool) *vma.VmaEntry {
		v := proc.VMA{Start: start, End: start + pages*page, Prot: prot, Shared: true, Offset: pgoff,
			Minor: testShmemDev, Inode: id, Path: fmt.Sprintf("/SYSV%08x", 0x1234), Deleted: true}
		if !rdonly {
			v.VmFlags = []string{"rd", "sh", "mr", "mw", "me", "ms"}
		}
		out, err := Backing{ShmemDev: unix.Mkdev(0, testShmemDev)}.Entries([]proc.VMA{v})
		if err != nil {
			panic(err)
		}
		return out[0]
	}
	vmas := []*vma.VmaEntry{sysv(a, 1, rw, 5, 0, false), sysv(a+page, 1, ro, 5, page, false), sysv(a+2*page, 2, rw|unix.PROT_EXEC, 5, 2*page, false),
		sysv(b, 4, ro, 5, 0, true)}
	vmas = append(vmas, dumpedVdso(dumpVdso)...)
	if err := CheckSysVAttachments(vmas, map[uint64]uint64{5: 3*page + 100}); err != nil {
		t.Fatalf("CheckSysVAttachments: %v", err)
	}
	s, p := planShared(t, memInput(vmas, nil), map[uint64]uint64{5: 3*page + 100})
	for _, want := range []seg{
		{start: a, end: a + page, prot: rw},
		{start: a + page, end: a + 2*page, prot: ro, off: 0},
		{start: a + 2*page, end: a + 4*page, prot: rw | unix.PROT_EXEC},
		{start: b, end: b + 4*page, prot: ro},
	} {
		if g := segAt(t, s, want.start); g.end != want.end || g.prot != want.prot || g.what != "sysv#5" {
			t.Errorf("mapping %v, want %x-%x prot %d of segment 5", g, want.start, want.end, want.prot)
		}
	}
	n := 0
	for _, c := range p.Calls {
		if c.Nr == unix.SYS_SHMAT {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d shmat calls, want 2 (one per attachment)", n)
	}
}

// TestCheckSysVAttachments refuses what restore cannot make: attachments
// that lack their start or their end.
func TestCheckSysVAttachments(t *testing.T) {
	mk := func(start, pages, pgoff uint64) *vma.VmaEntry {
		return &vma.VmaEntry{Start: proto.Uint64(start), End: proto.Uint64(start + pages*page), Pgoff: proto.Uint64(pgoff),
			Shmid: proto.Uint64(5), Status: proto.Uint32(StatusRegular | StatusAnonShared | StatusSysVIPC)}
	}
	sizes := map[uint64]uint64{5: 3 * page}
	for name, c := range map[string]struct {
		vmas []*vma.VmaEntry
		ok   bool
	}{
		"whole":      {[]*vma.VmaEntry{mk(0x10000, 3, 0)}, true},
		"split":      {[]*vma.VmaEntry{mk(0x10000, 1, 0), mk(0x11000, 2, page)}, true},
		"no end":     {[]*vma.VmaEntry{mk(0x10000, 2, 0)}, false},
		"no start":   {[]*vma.VmaEntry{mk(0x11000, 2, page)}, false},
		"with hole":  {[]*vma.VmaEntry{mk(0x10000, 1, 0), mk(0x12000, 1, 2*page)}, false},
		"two whole":  {[]*vma.VmaEntry{mk(0x10000, 3, 0), mk(0x20000, 3, 0)}, true},
		"misordered": {[]*vma.VmaEntry{mk(0x10000, 1, 0), mk(0x11000, 2, 0)}, false},
	} {
		if err := CheckSysVAttachments(c.vmas, sizes); (err == nil) != c.ok {
			t.Errorf("%s: err %v, want ok %v", name, err, c.ok)
		}
	}
}

// TestPlanMemfdMappings: memfd mappings are made from the descriptors
// the memfd planner gives, which the memory plan does not close.
func TestPlanMemfdMappings(t *testing.T) {
	const a, b = 0x1000_0000, 0x2000_0000
	memfdVMA := func(start, pages uint64, prot int, shared bool) *vma.VmaEntry {
		v := proc.VMA{Start: start, End: start + pages*page, Prot: prot, Shared: shared, Minor: testShmemDev,
			Inode: 55, Path: "/memfd:x", Deleted: true}
		out, err := Backing{ShmemDev: unix.Mkdev(0, testShmemDev), Memfd: func(proc.VMA) (uint32, error) { return 9, nil }}.Entries([]proc.VMA{v})
		if err != nil {
			panic(err)
		}
		return out[0]
	}
	vmas := append([]*vma.VmaEntry{memfdVMA(a, 2, rw, true), memfdVMA(b, 1, rw, false)}, dumpedVdso(dumpVdso)...)
	in := memInput(vmas, []*pagemap.PagemapEntry{present(b, 1)})
	var asked []uint32
	in.Memfd = func(b *plan.Builder, id, flags uint32) (int, error) {
		asked = append(asked, flags)
		return b.Open("memfd", fmt.Sprintf("memfd %d flags %d", id, flags), int(flags), 0), nil
	}
	s, _ := planShared(t, in, nil)
	if g := segAt(t, s, a); g.what != "memfd 9 flags 2" || g.flags != unix.MAP_SHARED || g.prot != rw {
		t.Errorf("shared memfd mapping %v, want MAP_SHARED rw from a read-write descriptor", g)
	}
	if g := segAt(t, s, b); g.what != "memfd 9 flags 0" || g.flags != unix.MAP_PRIVATE || g.prot != rw {
		t.Errorf("private memfd mapping %v, want MAP_PRIVATE rw from a read-only descriptor", g)
	}
	if want := []fill{{b, page, 0}}; !slices.Equal(s.fills, want) {
		t.Errorf("fills %v, want the private page %v", s.fills, want)
	}
	if want := []uint32{unix.O_RDWR, unix.O_RDONLY}; !slices.Equal(asked, want) {
		t.Errorf("asked the memfd planner for flags %v, want %v", asked, want)
	}
}
