package mem

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/proc"
)

// TestDataRuns scans this process: four adjacent one-page anonymous VMAs
// (alternating protections) with pages 0, 1 and 3 written, then a private
// mapping of a file with its first page written and its second only read.
// Runs come VMA by VMA, never merged across them, and the page only read
// from the file is not data.
func TestDataRuns(t *testing.T) {
	const pg = 4096
	anon, err := unix.Mmap(-1, 0, 4*pg, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(anon)
	anon[0], anon[pg], anon[3*pg] = 1, 2, 3
	if err := unix.Mprotect(anon[pg:2*pg], unix.PROT_READ); err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "scan")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 2*pg)); err != nil {
		t.Fatal(err)
	}
	file, err := unix.Mmap(int(f.Fd()), 0, 2*pg, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(file)
	file[0] = 9
	if file[pg] != 0 { // read: the file's page is mapped, no copy of our own
		t.Fatal("the file's second page is not zero")
	}

	base := uint64(uintptr(unsafe.Pointer(&anon[0])))
	fbase := uint64(uintptr(unsafe.Pointer(&file[0])))
	entry := func(start, end uint64, status uint32) *vma.VmaEntry {
		return &vma.VmaEntry{Start: proto.Uint64(start), End: proto.Uint64(end), Status: proto.Uint32(status)}
	}
	anonVMAs := []*vma.VmaEntry{
		entry(base, base+pg, StatusRegular|StatusAnonPrivate),
		entry(base+pg, base+2*pg, StatusRegular|StatusAnonPrivate),
		entry(base+2*pg, base+3*pg, StatusRegular|StatusAnonPrivate),
		entry(base+3*pg, base+4*pg, StatusRegular|StatusAnonPrivate),
	}
	s, err := NewScanner(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, _, err := s.DataRuns(anonVMAs)
	if err != nil {
		t.Fatal(err)
	}
	want := []Run{{base, base + pg}, {base + pg, base + 2*pg}, {base + 3*pg, base + 4*pg}}
	if !slices.Equal(got, want) {
		t.Errorf("anonymous VMAs: runs %x, want %x", got, want)
	}
	got, _, err = s.DataRuns([]*vma.VmaEntry{entry(fbase, fbase+2*pg, StatusRegular|StatusFilePrivate)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Run{{fbase, fbase + pg}}; !slices.Equal(got, want) {
		t.Errorf("private file mapping: runs %x, want %x", got, want)
	}
}

// TestScanVectorLimits scans an anonymous VMA of this process whose every
// other page is written: one region per written page, from fewer than
// the kernel gathers in one chunk of its walk (512 on x86-64) to more
// than two vectors hold, with vectors of 1 to 4096 regions. Every
// written page must come back once and in order, however the walk is
// cut: by a full vector, by the kernel's chunks, or both (the kernel
// then reports the walk_end of an earlier chunk, behind regions it
// returned, and a scan resuming there returned them twice).
func TestScanVectorLimits(t *testing.T) {
	s, err := NewScanner(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, regions := range []int{1, 511, 512, 513, 1024, 1100, 4095, 4096, 4097, 8192, 9000} {
		b, err := unix.Mmap(-1, 0, 2*regions*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			t.Fatal(err)
		}
		// A huge page would make every page present.
		if err := unix.Madvise(b, unix.MADV_NOHUGEPAGE); err != nil {
			t.Fatal(err)
		}
		var want []Run
		base := uint64(uintptr(unsafe.Pointer(&b[0])))
		for i := 0; i < regions; i++ {
			b[2*i*pageSize] = 1
			a := base + uint64(2*i*pageSize)
			want = append(want, Run{a, a + pageSize})
		}
		v := []*vma.VmaEntry{{Start: proto.Uint64(base), End: proto.Uint64(base + uint64(len(b))), Status: proto.Uint32(StatusRegular | StatusAnonPrivate)}}
		for _, vecLen := range []int{1, 7, 512, 513, 1000, scanVecLen} {
			s.vec = make([]pageRegion, vecLen)
			got, _, err := s.DataRuns(v)
			if err != nil {
				t.Fatalf("%d regions, vector of %d: %v", regions, vecLen, err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%d regions, vector of %d: %d runs back, want %d (first difference %s)", regions, vecLen, len(got), len(want), firstDifference(got, want))
			}
		}
		if err := unix.Munmap(b); err != nil {
			t.Fatal(err)
		}
	}
}

// firstDifference describes where two lists of runs first differ.
func firstDifference(got, want []Run) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("run %d: %#x-%#x, want %#x-%#x", i, got[i].Start, got[i].End, want[i].Start, want[i].End)
		}
	}
	switch {
	case len(got) > len(want):
		return fmt.Sprintf("extra run %#x-%#x", got[len(want)].Start, got[len(want)].End)
	case len(got) < len(want):
		return fmt.Sprintf("missing run %#x-%#x", want[len(got)].Start, want[len(got)].End)
	}
	return "none"
}

// TestDataRunsGuardPages: a guard page (MADV_GUARD_INSTALL) between two
// written pages of one VMA holds no data, and reading it faults: the
// kernel keeps it as a swap-like entry, but the scan tells it apart.
func TestDataRunsGuardPages(t *testing.T) {
	b, err := unix.Mmap(-1, 0, 3*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	b[0], b[2*pageSize] = 1, 2
	if err := unix.Madvise(b[pageSize:2*pageSize], unix.MADV_GUARD_INSTALL); err != nil {
		t.Skipf("MADV_GUARD_INSTALL: %v", err)
	}
	s, err := NewScanner(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := uint64(uintptr(unsafe.Pointer(&b[0])))
	v := []*vma.VmaEntry{{Start: proto.Uint64(base), End: proto.Uint64(base + 3*pageSize), Status: proto.Uint32(StatusRegular | StatusAnonPrivate)}}
	data, guards, err := s.DataRuns(v)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Run{{base, base + pageSize}, {base + 2*pageSize, base + 3*pageSize}}; !slices.Equal(data, want) {
		t.Errorf("data %x, want %x: the guard page in the middle is no data", data, want)
	}
	if want := []Run{{base + pageSize, base + 2*pageSize}}; !slices.Equal(guards, want) {
		t.Errorf("guards %x, want %x", guards, want)
	}
}

// TestSharedChunks: Shared reads pagemap a chunk at a time; across chunk
// bounds it still finds every page this process does not map alone (here
// the pages never written, which are not mapped at all).
func TestSharedChunks(t *testing.T) {
	const pages = 2*pagemapChunk + 5
	b, err := unix.Mmap(-1, 0, pages*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	if err := unix.Madvise(b, unix.MADV_NOHUGEPAGE); err != nil {
		t.Fatal(err)
	}
	base := uint64(uintptr(unsafe.Pointer(&b[0])))
	var want []Run
	for i := uint64(0); i < pages; i++ {
		if i%3 == 0 || i == pagemapChunk-1 || i == pagemapChunk {
			b[i*pageSize] = 1
			continue
		}
		want = appendRun(want, Run{base + i*pageSize, base + (i+1)*pageSize})
	}
	s, err := NewScanner(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Shared([]Run{{base, base + pages*pageSize}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("shared pages differ: %s", firstDifference(got, want))
	}
}

// TestPagemapReadsBounded: the pagemap entries of a run are read a chunk
// at a time, not all at once: a 16 GiB run (4 Mi entries, 32 MiB) costs
// Shared and CowRuns no more than a few chunks of memory.
func TestPagemapReadsBounded(t *testing.T) {
	const size = 16 << 30
	b, err := unix.Mmap(-1, 0, size, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	base := uint64(uintptr(unsafe.Pointer(&b[0])))
	run := []Run{{base, base + size}}
	s, err := NewScanner(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	shared, alloc := allocated(t, func() ([]Run, error) { return s.Shared(run, nil) })
	if !slices.Equal(shared, run) || alloc > 1<<20 {
		t.Errorf("Shared: %x (want %x: nothing mapped), %d bytes allocated", shared, run, alloc)
	}
	v := []*vma.VmaEntry{{Start: proto.Uint64(base), End: proto.Uint64(base + size), Status: proto.Uint32(StatusRegular | StatusAnonPrivate)}}
	cow, alloc := allocated(t, func() ([]Run, error) { return CowRuns(os.Getpid(), os.Getpid(), v, v, run) })
	if len(cow) != 0 || alloc > 1<<20 {
		t.Errorf("CowRuns: %x (want none: nothing mapped), %d bytes allocated", cow, alloc)
	}
}

// allocated runs f and says how many bytes the process allocated meanwhile.
func allocated(t *testing.T, f func() ([]Run, error)) ([]Run, uint64) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	runs, err := f()
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	return runs, after.TotalAlloc - before.TotalAlloc
}

// TestGuardRunsShared: guard pages in a mapping whose pages a dump does
// not save (shared memory) are found too: a dump must not lose them.
func TestGuardRunsShared(t *testing.T) {
	b, err := unix.Mmap(-1, 0, 4*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	b[0] = 1
	if err := unix.Madvise(b[pageSize:3*pageSize], unix.MADV_GUARD_INSTALL); err != nil {
		t.Skipf("MADV_GUARD_INSTALL on shared memory: %v", err)
	}
	s, err := NewScanner(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := uint64(uintptr(unsafe.Pointer(&b[0])))
	v := []*vma.VmaEntry{{Start: proto.Uint64(base), End: proto.Uint64(base + 4*pageSize), Status: proto.Uint32(StatusRegular | StatusAnonShared)}}
	p, err := planPages(s, v, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Run{{base + pageSize, base + 3*pageSize}}; !slices.Equal(p.guards, want) || len(p.runs) != 0 {
		t.Errorf("guards %x, want %x; data %x, want none", p.guards, want, p.runs)
	}
}

// A dump saves the [vdso] code pages, as CRIU does (its restore reads the
// dumped vdso's symbols from them), and never the vvar data.
func TestPlanPagesSavesVdso(t *testing.T) {
	all, err := proc.ReadSmaps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	_, _, pieces, err := VdsoBlock(all)
	if err != nil || len(pieces) == 0 {
		t.Skipf("no vdso block here (%v)", err)
	}
	vmas, err := Entries(pieces, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewScanner(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := planPages(s, vmas, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []Run
	for _, v := range pieces {
		if v.Path == "[vdso]" {
			want = append(want, Run{v.Start, v.End})
		}
	}
	if !slices.Equal(p.merged, want) {
		t.Errorf("saved %x, want the [vdso] pages %x", p.merged, want)
	}
}

// TestFileParts: on random runs of adjacent VMAs, fileParts keeps every
// VMA in order, scans without file pages only long stretches that hold
// no private file mapping, and takes at most two scans more than one
// per such stretch.
func TestFileParts(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	for range 2000 {
		var vmas []*vma.VmaEntry
		at := uint64(1 << 30)
		for range 1 + rnd.IntN(12) {
			pages := uint64(1 + rnd.IntN(4))
			if rnd.IntN(3) == 0 {
				pages = uint64(rnd.IntN(3 * anonScanMin))
				pages = max(pages, 1)
			}
			status := uint32(StatusRegular | StatusAnonPrivate)
			if rnd.IntN(2) == 0 {
				status = StatusRegular | StatusFilePrivate
			}
			vmas = append(vmas, &vma.VmaEntry{Start: proto.Uint64(at), End: proto.Uint64(at + pages*pageSize), Status: proto.Uint32(status)})
			at += pages * pageSize
		}
		parts := fileParts(vmas)
		var got []*vma.VmaEntry
		anonParts := 0
		for _, p := range parts {
			if len(p.vmas) == 0 {
				t.Fatalf("empty part in %v", parts)
			}
			got = append(got, p.vmas...)
			if p.file != hasFilePrivate(p.vmas) {
				t.Fatalf("part of %d VMAs: file %v, but a private file mapping in it: %v", len(p.vmas), p.file, hasFilePrivate(p.vmas))
			}
			if !p.file && len(parts) > 1 {
				anonParts++
				if n := (p.vmas[len(p.vmas)-1].GetEnd() - p.vmas[0].GetStart()) / pageSize; n < anonScanMin {
					t.Fatalf("a stretch of %d anonymous pages scanned apart", n)
				}
			}
		}
		if !slices.Equal(got, vmas) {
			t.Fatalf("parts do not hold the VMAs in order")
		}
		if len(parts) > 2*anonParts+1 {
			t.Fatalf("%d parts for %d long anonymous stretches", len(parts), anonParts)
		}
	}
}
