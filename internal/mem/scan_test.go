package mem

import (
	"os"
	"slices"
	"testing"
	"unsafe"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
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
	got, err := s.DataRuns(anonVMAs)
	if err != nil {
		t.Fatal(err)
	}
	want := []Run{{base, base + pg}, {base + pg, base + 2*pg}, {base + 3*pg, base + 4*pg}}
	if !slices.Equal(got, want) {
		t.Errorf("anonymous VMAs: runs %x, want %x", got, want)
	}
	got, err = s.DataRuns([]*vma.VmaEntry{entry(fbase, fbase+2*pg, StatusRegular|StatusFilePrivate)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Run{{fbase, fbase + pg}}; !slices.Equal(got, want) {
		t.Errorf("private file mapping: runs %x, want %x", got, want)
	}
}
