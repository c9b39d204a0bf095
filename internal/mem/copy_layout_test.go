package mem

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"amber/internal/compel"
	"amber/internal/image"

	"golang.org/x/sys/unix"
)

// TestCopyLayouts copies the pages a dump saves of random layouts (private
// data, pages shared with another mapping, file pages, guards, gaps) in
// chunks of one page, three pages, copyChunk and 4 MiB, one worker and
// several, and checks the image against /proc/PID/mem read run by run and
// its sum against a CRC of the whole image.
func TestCopyLayouts(t *testing.T) {
	forPlannedLayouts(t, func(t *testing.T, spec layoutSpec, pid int, plan pagePlan) {
		want, total := readRunsSlowly(t, pid, plan.runs)
		if len(plan.shared) == 0 || total < 8*pageSize {
			t.Fatalf("layout of %d bytes, %d shared runs: too little to check", total, len(plan.shared))
		}
		for _, chunk := range []uint64{pageSize, 3 * pageSize, copyChunk, 4 << 20} {
			checkCopy(t, pid, plan, total, chunk, want)
		}
	})
}

// forPlannedLayouts runs check on each of the random layouts (with a
// file's pages among them), as a subtest, with the pages a dump of it
// plans to save.
func forPlannedLayouts(t *testing.T, check func(t *testing.T, spec layoutSpec, pid int, plan pagePlan)) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: pagemap page frames")
	}
	const filePages = 256
	file := layoutFile(t, filePages)
	for _, spec := range layoutSpecs(t) {
		spec.File, spec.FilePages = file, filePages
		t.Run(fmt.Sprintf("seed=%d/segments=%d", spec.Seed, spec.Segments), func(t *testing.T) {
			t.Logf("replay with %s=%d", layoutSeedEnv, spec.Seed)
			c := startLayout(t, spec)
			pid := c.cmd.Process.Pid
			s, err := newScanner(pid, 512)
			if err != nil {
				t.Fatal(err)
			}
			vmas, alone := layoutVMAs(t, c)
			plan, err := planPages(s, vmas, alone, nil)
			s.Close()
			if err != nil {
				t.Fatal(err)
			}
			check(t, spec, pid, plan)
		})
	}
}

// checkCopy copies plan's runs with chunk bytes a chunk and compares.
func checkCopy(t *testing.T, pid int, plan pagePlan, total, chunk uint64, want []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pages.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sum, err := copyRuns(&compel.Task{Pid: pid}, f, plan.runs, plan.shared, nil, total, chunk)
	if err != nil {
		t.Fatalf("chunk %d: %v", chunk, err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("chunk %d (%d workers): image of %d bytes, want %d", chunk, copyWorkers(total, chunk), len(got), len(want))
	}
	for off := 0; off < len(want); off += pageSize {
		if string(got[off:off+pageSize]) != string(want[off:off+pageSize]) {
			t.Fatalf("chunk %d (%d workers): page at image offset %d differs from the task's", chunk, copyWorkers(total, chunk), off)
		}
	}
	if w := (image.Sum{Size: int64(len(got)), CRC: image.Checksum(got)}); sum.Sum != w {
		t.Errorf("chunk %d: sum %+v, want %+v", chunk, sum.Sum, w)
	}
	if len(sum.Pieces) != image.PieceCount(int64(len(got))) {
		t.Fatalf("chunk %d: %d piece sums for %d bytes", chunk, len(sum.Pieces), len(got))
	}
	for i, crc := range sum.Pieces {
		piece := got[i*image.PieceSize : min(len(got), (i+1)*image.PieceSize)]
		if w := image.Checksum(piece); crc != w {
			t.Errorf("chunk %d: piece %d: CRC32C %08x, want %08x", chunk, i, crc, w)
		}
	}
}

// readRunsSlowly reads the runs a page at a time through /proc/PID/mem.
func readRunsSlowly(t *testing.T, pid int, runs []Run) ([]byte, uint64) {
	t.Helper()
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/mem", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var out []byte
	page := make([]byte, pageSize)
	for _, r := range runs {
		for a := r.Start; a < r.End; a += pageSize {
			if n, err := unix.Pread(fd, page, int64(a)); err != nil || n != pageSize {
				t.Fatalf("read %#x: %d, %v", a, n, err)
			}
			out = append(out, page...)
		}
	}
	return out, uint64(len(out))
}
