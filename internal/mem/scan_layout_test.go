package mem

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/kerndat"
	"amber/internal/proc"
)

// The property test of the dump's page scan: a child process (this test
// binary run again with layoutEnv set) builds a random layout of every
// kind of mapping, with pages written, read, zapped, guarded or mapping
// the zero page, part of them shared copy-on-write with a process it
// forked; the test runs planPages on it, with vectors of every size, and
// checks each answer against /proc/PID/pagemap read one page at a time.

// layoutEnv holds the layoutSpec (JSON) of the layout a child builds.
const layoutEnv = "AMBER_MEM_LAYOUT"

// layoutSeedEnv replays the layouts of one seed (as logged).
const layoutSeedEnv = "AMBER_MEM_LAYOUT_SEED"

func TestMain(m *testing.M) {
	if spec := os.Getenv(layoutEnv); spec != "" {
		os.Exit(runLayoutChild(spec))
	}
	os.Exit(m.Run())
}

// layoutSpec says what random layout a child builds.
type layoutSpec struct {
	Seed      uint64
	Segments  int    // mappings and gaps, one after another
	BigPages  int    // the longest mapping, in pages
	BigOdds   int    // one mapping in BigOdds is long
	HugeOdds  int    // one in HugeOdds is 2 MiB of transparent huge pages
	File      string // a file of FilePages pages to map
	FilePages int
	// Track: the child makes a tracking userfaultfd and, when told, a
	// second round of writes, zaps and reads (track_layout_test.go).
	Track bool
}

// segKind is a kind of mapping in a layout.
type segKind int

const (
	segGap        segKind = iota // nothing mapped
	segAnon                      // private anonymous, read-write
	segAnonRO                    // private anonymous, read-only after the writes
	segAnonNone                  // private anonymous, PROT_NONE after the writes
	segFile                      // private file, read-write
	segFileRO                    // private file, read-only after the writes
	segSharedAnon                // MAP_SHARED|MAP_ANONYMOUS
	segSharedFile                // MAP_SHARED file
	segHuge                      // private anonymous, MADV_HUGEPAGE, 2 MiB aligned, all written
	nSegKinds
)

// segWeights are the odds of each kind but segHuge (one in HugeOdds).
var segWeights = [nSegKinds]int{2, 6, 1, 2, 3, 1, 1, 1, 0}

// pageAction is what a child does to one page of a mapping.
type pageAction int

const (
	actNone  pageAction = iota // never touched
	actRead                    // read: a page of the file, or a fresh one (or the zero page)
	actWrite                   // written
	actZap                     // written, then dropped with MADV_DONTNEED
	actGuard                   // a guard page (MADV_GUARD_INSTALL)
	actZero                    // the zero page, placed by UFFDIO_ZEROPAGE
	nActions
)

var actWeights = [nActions]int{3, 2, 4, 1, 1, 1}

// layoutSeg is one mapping (or gap) of a layout.
type layoutSeg struct {
	kind      segKind
	pages     int
	fileStart int // first page of the file, for file kinds
}

// runLayoutChild builds the layout of spec, says "ready LO HI SUM" (its
// range and what its reads read) and waits for its stdin to close.
func runLayoutChild(spec string) int {
	var s layoutSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	runtime.LockOSThread() // the sharer dies with the thread that forked it
	b, err := newLayoutBuilder(s)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	lo, hi, err := b.build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("ready %d %d %d\n", lo, hi, b.sum)
	if s.Track {
		if err := b.trackRound(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	io.Copy(io.Discard, os.Stdin)
	if b.sharer > 0 {
		unix.Kill(b.sharer, unix.SIGKILL)
		unix.Wait4(b.sharer, nil, 0, nil)
	}
	return 0
}

// layoutBuilder makes a layout in its own process.
type layoutBuilder struct {
	spec    layoutSpec
	rnd     *rand.Rand
	fd      int
	uffd    int  // -1 without userfaultfd
	guards  bool // MADV_GUARD_INSTALL works
	mem     []byte
	kind    segKind // of the segment being made
	written []int   // offsets in mem of pages written that stay writable
	gaps    [][2]int
	sharer  int
	sum     byte // what reads read, so that they are not optimised away
}

func newLayoutBuilder(s layoutSpec) (*layoutBuilder, error) {
	fd, err := unix.Open(s.File, unix.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", s.File, err)
	}
	b := &layoutBuilder{spec: s, rnd: rand.New(rand.NewPCG(s.Seed, 0x5ca1ab1e)), fd: fd, uffd: openUffd()}
	b.guards = probeGuards()
	return b, nil
}

// openUffd returns a userfaultfd past its handshake, or -1.
func openUffd() int {
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC, 0, 0)
	if e != 0 {
		return -1
	}
	api := [3]uint64{0xaa} // struct uffdio_api {UFFD_API}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, 0xc018aa3f, uintptr(unsafe.Pointer(&api))); e != 0 {
		unix.Close(int(fd))
		return -1
	}
	return int(fd)
}

// probeGuards tells whether this kernel installs guard pages.
func probeGuards() bool {
	p, err := unix.Mmap(-1, 0, pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return false
	}
	defer unix.Munmap(p)
	return unix.Madvise(p, unix.MADV_GUARD_INSTALL) == nil
}

// plan draws the segments of the layout.
func (b *layoutBuilder) plan() []layoutSeg {
	var segs []layoutSeg
	for range b.spec.Segments {
		s := layoutSeg{kind: b.drawKind(), pages: 1 + b.rnd.IntN(4)}
		if b.rnd.IntN(b.spec.BigOdds) == 0 {
			s.pages = 1 + b.rnd.IntN(b.spec.BigPages)
		}
		switch s.kind {
		case segHuge:
			s.pages = 512
		case segFile, segFileRO, segSharedFile:
			s.pages = min(s.pages, b.spec.FilePages)
			s.fileStart = b.rnd.IntN(b.spec.FilePages - s.pages + 1)
		}
		segs = append(segs, s)
	}
	return segs
}

func (b *layoutBuilder) drawKind() segKind {
	if b.rnd.IntN(b.spec.HugeOdds) == 0 {
		return segHuge
	}
	return segKind(pick(b.rnd, segWeights[:]))
}

// pick draws an index with the given weights.
func pick(rnd *rand.Rand, weights []int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := rnd.IntN(total)
	for i, w := range weights {
		if n < w {
			return i
		}
		n -= w
	}
	panic("unreachable")
}

// build maps the layout in a reserved range, forks the sharer, writes
// some pages again, unmaps the gaps and returns the range.
func (b *layoutBuilder) build() (lo, hi uint64, err error) {
	segs := b.plan()
	total := 512 // room to align the start to 2 MiB
	for _, s := range segs {
		total += s.pages
		if s.kind == segHuge {
			total += 512
		}
	}
	// The range stays reserved (PROT_NONE) until the end, so that nothing
	// else is mapped in its gaps meanwhile.
	b.mem, err = unix.Mmap(-1, 0, total*pageSize, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return 0, 0, fmt.Errorf("reserve %d pages: %w", total, err)
	}
	start := int(-uintptr(unsafe.Pointer(&b.mem[0])) & (hugePage - 1))
	at := start
	// One segment in lateOdds is mapped after the fork: its pages are
	// the child's alone, and smaps says so (MappedAlone).
	const lateOdds = 4
	var late []int
	for _, s := range segs {
		if s.kind == segHuge {
			if pad := -(at - start) & (hugePage - 1); pad > 0 {
				b.gaps = append(b.gaps, [2]int{at, at + pad})
				at += pad
			}
		}
		if s.kind != segGap && b.rnd.IntN(lateOdds) == 0 {
			late = append(late, at)
		} else if err := b.place(s, at); err != nil {
			return 0, 0, fmt.Errorf("%d-page segment of kind %d at %#x: %w", s.pages, s.kind, at, err)
		}
		at += s.pages * pageSize
	}
	if err := b.share(); err != nil {
		return 0, 0, err
	}
	if err := b.placeLate(segs, start, late); err != nil {
		return 0, 0, err
	}
	b.gaps = append(b.gaps, [2]int{0, start}, [2]int{at, len(b.mem)})
	for _, g := range b.gaps {
		if g[1] > g[0] {
			if err := unix.MunmapPtr(unsafe.Pointer(&b.mem[g[0]]), uintptr(g[1]-g[0])); err != nil {
				return 0, 0, fmt.Errorf("unmap gap: %w", err)
			}
		}
	}
	base := uint64(uintptr(unsafe.Pointer(&b.mem[0])))
	return base + uint64(start), base + uint64(at), nil
}

// placeLate places the segments of segs that build left for after the
// fork, at the offsets late (in order).
func (b *layoutBuilder) placeLate(segs []layoutSeg, start int, late []int) error {
	at := start
	for _, s := range segs {
		if len(late) == 0 {
			return nil
		}
		if s.kind == segHuge {
			at += -(at - start) & (hugePage - 1)
		}
		if at == late[0] {
			if err := b.place(s, at); err != nil {
				return fmt.Errorf("late %d-page segment of kind %d at %#x: %w", s.pages, s.kind, at, err)
			}
			late = late[1:]
		}
		at += s.pages * pageSize
	}
	return nil
}

// place maps s at offset at of the range and does what it draws to
// each page.
func (b *layoutBuilder) place(s layoutSeg, at int) error {
	size := s.pages * pageSize
	if s.kind == segGap {
		b.gaps = append(b.gaps, [2]int{at, at + size})
		return nil
	}
	if err := b.mmap(s, at); err != nil {
		return err
	}
	b.kind = s.kind
	area := b.mem[at : at+size]
	switch s.kind {
	case segHuge:
		if err := unix.Madvise(area, unix.MADV_HUGEPAGE); err != nil {
			return fmt.Errorf("MADV_HUGEPAGE: %w", err)
		}
		for p := 0; p < size; p += pageSize {
			b.write(at + p)
		}
		return nil
	case segAnon, segAnonRO, segAnonNone:
		// Where THP is always on, khugepaged could fill a range
		// between the scan and the check.
		if err := unix.Madvise(area, unix.MADV_NOHUGEPAGE); err != nil {
			return fmt.Errorf("MADV_NOHUGEPAGE: %w", err)
		}
	}
	acts := b.actions(s)
	if err := b.zeroPages(at, acts); err != nil {
		return err
	}
	for i, a := range acts {
		if err := b.act(at+i*pageSize, a); err != nil {
			return err
		}
	}
	switch s.kind {
	case segAnonRO, segFileRO:
		return unix.Mprotect(area, unix.PROT_READ)
	case segAnonNone:
		return unix.Mprotect(area, unix.PROT_NONE)
	}
	return nil
}

// mmap maps segment s at offset at, over the reservation.
func (b *layoutBuilder) mmap(s layoutSeg, at int) error {
	fd, off, flags := -1, int64(0), unix.MAP_PRIVATE|unix.MAP_ANONYMOUS
	switch s.kind {
	case segFile, segFileRO:
		fd, off, flags = b.fd, int64(s.fileStart*pageSize), unix.MAP_PRIVATE
	case segSharedFile:
		fd, off, flags = b.fd, int64(s.fileStart*pageSize), unix.MAP_SHARED
	case segSharedAnon:
		flags = unix.MAP_SHARED | unix.MAP_ANONYMOUS
	}
	_, err := unix.MmapPtr(fd, off, unsafe.Pointer(&b.mem[at]), uintptr(s.pages*pageSize),
		unix.PROT_READ|unix.PROT_WRITE, flags|unix.MAP_FIXED)
	return err
}

// actions draws what happens to each page of s.
func (b *layoutBuilder) actions(s layoutSeg) []pageAction {
	acts := make([]pageAction, s.pages)
	for i := range acts {
		a := pageAction(pick(b.rnd, actWeights[:]))
		anon := s.kind == segAnon || s.kind == segAnonRO || s.kind == segAnonNone
		if (a == actGuard && !b.guards) || (a == actZero && (!anon || b.uffd < 0)) {
			a = actNone
		}
		acts[i] = a
	}
	return acts
}

// zeroPages maps the zero page where acts say so, with userfaultfd: a
// read fault may not (a kernel may give every read fault a page of its
// own, as this machine's pvm_no_zero_page does).
func (b *layoutBuilder) zeroPages(at int, acts []pageAction) error {
	if !slices.Contains(acts, actZero) {
		return nil
	}
	start := uint64(uintptr(unsafe.Pointer(&b.mem[at])))
	rng := [2]uint64{start, uint64(len(acts) * pageSize)}
	reg := [4]uint64{rng[0], rng[1], 1} // struct uffdio_register, MODE_MISSING
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(b.uffd), 0xc020aa00, uintptr(unsafe.Pointer(&reg))); e != 0 {
		return fmt.Errorf("UFFDIO_REGISTER: %w", e)
	}
	for i, a := range acts {
		if a != actZero {
			continue
		}
		z := [4]uint64{start + uint64(i*pageSize), pageSize} // struct uffdio_zeropage
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(b.uffd), 0xc020aa04, uintptr(unsafe.Pointer(&z))); e != 0 {
			return fmt.Errorf("UFFDIO_ZEROPAGE: %w", e)
		}
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(b.uffd), 0x8010aa01, uintptr(unsafe.Pointer(&rng))); e != 0 {
		return fmt.Errorf("UFFDIO_UNREGISTER: %w", e)
	}
	return nil
}

// act does a to the page at offset at.
func (b *layoutBuilder) act(at int, a pageAction) error {
	page := b.mem[at : at+pageSize]
	switch a {
	case actRead:
		b.sum += page[b.rnd.IntN(pageSize)]
	case actWrite:
		b.write(at)
	case actZap:
		b.mem[at] = 1
		return unix.Madvise(page, unix.MADV_DONTNEED)
	case actGuard:
		// Older kernels refuse guards in file and shared mappings.
		if err := unix.Madvise(page, unix.MADV_GUARD_INSTALL); err != unix.EINVAL {
			return err
		}
	}
	return nil
}

// write writes a byte of the page at offset at, and notes the page if
// it stays writable (share writes some again).
func (b *layoutBuilder) write(at int) {
	b.mem[at+b.rnd.IntN(pageSize)] = byte(1 + b.rnd.IntN(255))
	if b.kind == segAnon || b.kind == segFile || b.kind == segHuge {
		b.written = append(b.written, at)
	}
}

// share forks a process that only waits, so that the private pages
// written so far are shared copy-on-write, then writes a third of them
// again: those are this process's alone once more.
func (b *layoutBuilder) share() error {
	pid, _, e := unix.RawSyscall(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0)
	if e != 0 {
		return fmt.Errorf("fork: %w", e)
	}
	if pid == 0 {
		sharerWait()
	}
	b.sharer = int(pid)
	for _, at := range b.written {
		if b.rnd.IntN(3) == 0 {
			b.mem[at] ^= 0x5a
		}
	}
	return nil
}

// sharerWait is all the forked copy of a multithreaded Go process may
// do: raw system calls, until its parent's thread dies.
//
//go:nosplit
func sharerWait() {
	unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0)
	for {
		unix.RawSyscall(unix.SYS_PAUSE, 0, 0, 0)
	}
}

// layoutChild is a running child that built a layout in [lo, hi).
type layoutChild struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader // what it says after "ready"
	lo, hi uint64
}

// startLayout starts a child building the layout of spec.
func startLayout(t *testing.T, spec layoutSpec) *layoutChild {
	t.Helper()
	js, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), layoutEnv+"="+string(js), "GOMAXPROCS=1", "GOGC=off")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &layoutChild{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(c.stop)
	line, err := c.out.ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 4 || f[0] != "ready" {
		t.Fatalf("layout child: %q, %v", line, err)
	}
	var err1, err2 error
	c.lo, err1 = strconv.ParseUint(f[1], 10, 64)
	c.hi, err2 = strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("layout child: %q", line)
	}
	return c
}

func (c *layoutChild) stop() {
	c.stdin.Close()
	c.cmd.Wait()
}

// layoutVMAs returns the child's VMAs in its range as dump sees them,
// and those smaps finds mapped by the child alone (MappedAlone).
func layoutVMAs(t *testing.T, c *layoutChild) ([]*vma.VmaEntry, []Run) {
	t.Helper()
	all, err := proc.ReadSmaps(c.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	var mine []proc.VMA
	for _, v := range all {
		if v.End > c.lo && v.Start < c.hi {
			mine = append(mine, v)
		}
	}
	dev, err := kerndat.ShmemDev()
	if err != nil {
		t.Fatal(err)
	}
	fileID := func(proc.VMA) (uint32, error) { return 1, nil }
	vmas, err := Backing{File: fileID, ShmemDev: dev}.Entries(mine)
	if err != nil {
		t.Fatal(err)
	}
	return vmas, MappedAlone(mine)
}

// Bits of /proc/kpageflags.
const (
	kpfTHP        = 1 << 22
	kpfZeroPage   = 1 << 24
	kpageflagsDev = "/proc/kpageflags"
)

// pagemapTruth is what a dump must find in a layout: its data pages VMA
// by VMA, those shared, its guard pages, and how many of each kind of
// page there were.
type pagemapTruth struct {
	runs, shared, guards []Run
	scanned              uint64
	counts               layoutCounts
}

// layoutCounts says what a layout held, so that a test can tell it
// checked something of each.
type layoutCounts struct {
	VMAs, Private, Data, Shared, Zero, Guard, FilePages, Gaps, Huge int
	OtherGuard                                                      int // guard pages in shared mappings
	// AloneData are data pages in VMAs that smaps finds the child maps
	// alone (MappedAlone), whose pagemap entries Shared skips.
	AloneData int
	// SplitScans are ranges of adjacent VMAs that DataRuns scans in
	// parts, long anonymous stretches apart from private file mappings.
	SplitScans int
	// MostRuns is the most runs of data in one range of adjacent private
	// VMAs, which one scan walks: above 512 the kernel walks it in
	// chunks, above 4096 a dump's scan takes several ioctls.
	MostRuns int
}

func (c *layoutCounts) add(o layoutCounts) {
	c.VMAs += o.VMAs
	c.Private += o.Private
	c.Data += o.Data
	c.Shared += o.Shared
	c.Zero += o.Zero
	c.Guard += o.Guard
	c.FilePages += o.FilePages
	c.Gaps += o.Gaps
	c.Huge += o.Huge
	c.OtherGuard += o.OtherGuard
	c.AloneData += o.AloneData
	c.SplitScans += o.SplitScans
	c.MostRuns = max(c.MostRuns, o.MostRuns)
}

// slowTruth reads the pagemap entry of every page of vmas one by one,
// and the flags of every frame present, and says which pages of private
// mappings a dump must save: present or swapped out, but not the zero
// page, not a guard page, and not a page of the file in a private file
// mapping; shared if the task does not map it alone; and the guard pages
// of every mapping.
func slowTruth(t *testing.T, pid int, vmas []*vma.VmaEntry) pagemapTruth {
	t.Helper()
	pm, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	kpf, err := os.Open(kpageflagsDev)
	if err != nil {
		t.Fatal(err)
	}
	defer kpf.Close()
	var tr pagemapTruth
	tr.counts.VMAs = len(vmas)
	var scanned []Run // the data of the range of adjacent private VMAs one scan walks
	for i, v := range vmas {
		if i > 0 && vmas[i-1].GetEnd() != v.GetStart() {
			tr.counts.Gaps++
		}
		if i == 0 || !savedAtDump(vmas[i-1]) || vmas[i-1].GetEnd() != v.GetStart() {
			scanned = nil
		}
		if !savedAtDump(v) {
			tr.guards = slowGuards(t, pm, v, tr.guards, &tr.counts)
			continue
		}
		tr.counts.Private++
		tr.scanned += (v.GetEnd() - v.GetStart()) / pageSize
		var mine []Run
		for a := v.GetStart(); a < v.GetEnd(); a += pageSize {
			page := Run{a, a + pageSize}
			switch slowPage(t, pm, kpf, a, v.GetStatus()&StatusFilePrivate != 0, &tr.counts) {
			case pageShared:
				tr.shared = appendRun(tr.shared, page)
				fallthrough
			case pageData:
				mine = appendRun(mine, page)
				scanned = appendRun(scanned, page)
			case pageGuard:
				tr.guards = appendRun(tr.guards, page)
			}
		}
		tr.runs = append(tr.runs, mine...)
		tr.counts.MostRuns = max(tr.counts.MostRuns, len(scanned))
	}
	return tr
}

// slowGuards appends the guard pages of v, a mapping whose pages a dump
// does not save, reading its pagemap entries one by one.
func slowGuards(t *testing.T, pm *os.File, v *vma.VmaEntry, guards []Run, c *layoutCounts) []Run {
	for a := v.GetStart(); a < v.GetEnd(); a += pageSize {
		if readWord(t, pm, a/pageSize)&pmGuard != 0 {
			guards = appendRun(guards, Run{a, a + pageSize})
			c.OtherGuard++
		}
	}
	return guards
}

// pageKind is what slowPage finds a page to be.
type pageKind int

const (
	pageNoData pageKind = iota
	pageData            // data the task maps alone
	pageShared          // data other processes map too
	pageGuard
)

// slowPage reads the pagemap entry of the page at a, and the flags of
// its frame, and tells what it is (filePrivate: in a private file
// mapping), counting it in c.
func slowPage(t *testing.T, pm, kpf *os.File, a uint64, filePrivate bool, c *layoutCounts) pageKind {
	e := readWord(t, pm, a/pageSize)
	var flags uint64
	if e&pmPresent != 0 {
		flags = readWord(t, kpf, e&pmPfnMask)
	}
	zero := flags&kpfZeroPage != 0
	file := filePrivate && e&pmFile != 0
	guard := e&pmGuard != 0
	c.Zero += b2i(zero)
	c.Guard += b2i(guard)
	c.FilePages += b2i(file)
	switch {
	case guard:
		return pageGuard
	case e&(pmPresent|pmSwap) == 0 || zero || file:
		return pageNoData
	}
	c.Data++
	c.Huge += b2i(flags&kpfTHP != 0)
	if e&pmExclusive == 0 {
		c.Shared++
		return pageShared
	}
	return pageData
}

// readWord reads the 8-byte word at index i of f.
func readWord(t *testing.T, f *os.File, i uint64) uint64 {
	var b [8]byte
	if _, err := f.ReadAt(b[:], int64(i*8)); err != nil {
		t.Fatalf("%s word %#x: %v", f.Name(), i, err)
	}
	return binary.LittleEndian.Uint64(b[:])
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (tr pagemapTruth) equal(o pagemapTruth) bool {
	return slices.Equal(tr.runs, o.runs) && slices.Equal(tr.shared, o.shared) &&
		slices.Equal(tr.guards, o.guards) && tr.scanned == o.scanned
}

// scanVecLens are the vector sizes each layout is scanned with: every
// scan of a long layout is cut into many, the kernel's 512-region chunks
// land inside and at the end of a vector, and the dump's own size.
var scanVecLens = []int{1, 5, 512, 513, 1000, scanVecLen}

// checkLayoutScans scans the child's layout with every vector size, and
// by reading pagemap entries as kernels without PAGEMAP_SCAN do, and
// compares planPages with slowTruth. A layout that changes meanwhile (the
// kernel may reclaim a clean file page) is looked at again.
func checkLayoutScans(t *testing.T, c *layoutChild) layoutCounts {
	t.Helper()
	pid := c.cmd.Process.Pid
	for range 3 {
		vmas, alone := layoutVMAs(t, c)
		before := slowTruth(t, pid, vmas)
		// Each vector size, then the scan of kernels without
		// PAGEMAP_SCAN, which reads pagemap entries (vector size 0).
		sizes := append(slices.Clone(scanVecLens), 0)
		plans := make([]pagePlan, len(sizes))
		for i, n := range sizes {
			s, err := newScanner(pid, max(n, 1))
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				err = s.readEntries()
			}
			if err == nil {
				plans[i], err = planPages(s, vmas, alone, nil)
			}
			s.Close()
			if err != nil {
				t.Fatalf("vector of %d: %v", n, err)
			}
		}
		after := slowTruth(t, pid, vmas)
		if !before.equal(after) {
			t.Logf("the layout changed while it was scanned; again")
			continue
		}
		for i, p := range plans {
			comparePlan(t, sizes[i], p, before)
		}
		counts := before.counts
		for _, r := range intersectRuns(mergeRuns(before.runs), alone) {
			counts.AloneData += int((r.End - r.Start) / pageSize)
		}
		for _, g := range adjacent(vmas, savedAtDump) {
			counts.SplitScans += b2i(len(fileParts(g)) > 1)
		}
		return counts
	}
	t.Fatal("the layout kept changing while it was scanned")
	return layoutCounts{}
}

// comparePlan reports where plan p, from a scan with vectors of vecLen
// regions, differs from the truth.
func comparePlan(t *testing.T, vecLen int, p pagePlan, tr pagemapTruth) {
	t.Helper()
	if !slices.Equal(p.runs, tr.runs) {
		t.Errorf("vector of %d: data runs differ from pagemap: %s", vecLen, firstDifference(p.runs, tr.runs))
	}
	if want := mergeRuns(tr.runs); !slices.Equal(p.merged, want) {
		t.Errorf("vector of %d: pagemap entries differ: %s", vecLen, firstDifference(p.merged, want))
	}
	if !slices.Equal(p.shared, tr.shared) {
		t.Errorf("vector of %d: shared pages differ from pagemap: %s", vecLen, firstDifference(p.shared, tr.shared))
	}
	if !slices.Equal(p.guards, tr.guards) {
		t.Errorf("vector of %d: guard pages differ from pagemap: %s", vecLen, firstDifference(p.guards, tr.guards))
	}
	if p.scanned != tr.scanned {
		t.Errorf("vector of %d: %d pages scanned, want %d", vecLen, p.scanned, tr.scanned)
	}
}

// layoutFile creates the file layouts map: pages of non-zero bytes.
func layoutFile(t *testing.T, pages int) string {
	t.Helper()
	path := t.TempDir() + "/layout.data"
	b := make([]byte, pages*pageSize)
	for i := range b {
		b[i] = byte(i%251 + 1)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// bigLayout has more than 10,000 VMAs, a few runs of thousands of pages
// and scans with many vectors; smallLayout has a thousand VMAs and many
// long runs.
func bigLayout(seed uint64) layoutSpec {
	return layoutSpec{Seed: seed, Segments: 16000, BigPages: 4096, BigOdds: 2000, HugeOdds: 2000}
}

func smallLayout(seed uint64) layoutSpec {
	return layoutSpec{Seed: seed, Segments: 1500, BigPages: 3000, BigOdds: 100, HugeOdds: 300}
}

// layoutSpecs are the layouts of a run: both sizes for the seed
// layoutSeedEnv names, or a big and a small one of fixed seeds and a
// small one of a new seed each run (logged, to replay it). The fixed
// ones alone have every kind of page requireCoverage asks for: the
// big layout of seed 1 had no range of more than 512 runs (468), and
// a run had one only when its new seed drew it (in about 4 of 5).
func layoutSpecs(t *testing.T) []layoutSpec {
	if s := os.Getenv(layoutSeedEnv); s != "" {
		n, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", layoutSeedEnv, s, err)
		}
		return []layoutSpec{bigLayout(n), smallLayout(n)}
	}
	return []layoutSpec{bigLayout(3), smallLayout(2), smallLayout(uint64(time.Now().UnixNano()))}
}

// TestScanLayouts checks the dump's page scan on random layouts against
// /proc/PID/pagemap read page by page, each layout scanned with vectors
// of 1 to 4096 regions. It needs root: page frames in pagemap and
// /proc/kpageflags are root's.
func TestScanLayouts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: pagemap page frames and /proc/kpageflags")
	}
	const filePages = 256
	file := layoutFile(t, filePages)
	var total layoutCounts
	for _, spec := range layoutSpecs(t) {
		spec.File, spec.FilePages = file, filePages
		t.Run(fmt.Sprintf("seed=%d/segments=%d", spec.Seed, spec.Segments), func(t *testing.T) {
			t.Logf("replay with %s=%d", layoutSeedEnv, spec.Seed)
			counts := checkLayoutScans(t, startLayout(t, spec))
			t.Logf("%+v", counts)
			total.add(counts)
		})
	}
	requireCoverage(t, total)
}

// requireCoverage fails a run whose layouts lacked a kind of page the
// kernel can make: it would have checked nothing of it.
func requireCoverage(t *testing.T, c layoutCounts) {
	t.Helper()
	need := map[string]int{"VMAs beside private ones": c.VMAs - c.Private, "gaps": c.Gaps,
		"data pages": c.Data, "shared pages": c.Shared, "file pages in private mappings": c.FilePages,
		"range with more runs than the kernel walks at once (512)": max(c.MostRuns-512, 0),
		"data pages in VMAs mapped alone":                          c.AloneData, "ranges scanned in parts": c.SplitScans}
	if probeGuards() {
		need["guard pages"] = c.Guard
		need["guard pages in shared mappings"] = c.OtherGuard
	}
	if fd := openUffd(); fd >= 0 {
		unix.Close(fd)
		need["zero pages"] = c.Zero
	}
	for what, n := range need {
		if n == 0 {
			t.Errorf("the layouts had no %s", what)
		}
	}
}
