package image

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHashFileWorkers: a large file hashes to its CRC32C whatever the
// workers and CPUs: in the foreground (one worker per CPU) and in the
// background with one CPU, two or all (one worker fewer than CPUs, at
// least one), over sizes that end inside a piece, on one, or before the
// first ends.
func TestHashFileWorkers(t *testing.T) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	one, two := unix.CPUSet{}, unix.CPUSet{}
	one.Set(0)
	two.Set(0)
	two.Set(1)
	for _, c := range []struct {
		cpus *unix.CPUSet
		want int
	}{{nil, runtime.NumCPU()}, {&one, 1}, {&two, 1}, {&all, max(1, all.Count()-1)}} {
		if got := hashWorkers(c.cpus); got != c.want {
			t.Errorf("hashWorkers(%v) = %d, want %d", c.cpus, got, c.want)
		}
	}
	data := make([]byte, 3*hashPiece+12345)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	path := filepath.Join(t.TempDir(), "pages-1.img")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, size := range []int64{int64(len(data)), 2 * hashPiece, hashPiece + 1, hashBuf + 3, 1} {
		want := Checksum(data[:size])
		for _, cpus := range []*unix.CPUSet{nil, &one, &two, &all} {
			got, err := hashFile(f, size, nil, cpus, nil)
			if err != nil || got != (Sum{Size: size, CRC: want}) {
				t.Errorf("size %d, cpus %v: hashFile = %+v, %v; want CRC %08x", size, cpus, got, err, want)
			}
		}
	}
}
