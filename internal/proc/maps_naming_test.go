package proc

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReadMapsNaming: the maps of a process that maps anonymous shared
// memory are parsed when asked for "/dev/zero", with that mapping among
// them; asked for a path no mapping has, nothing is parsed.
func TestReadMapsNaming(t *testing.T) {
	b, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	vmas, err := ReadMapsNaming(os.Getpid(), "/dev/zero")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range vmas {
		found = found || v.Path == "/dev/zero" && v.Shared
	}
	if !found {
		t.Errorf("no shared /dev/zero mapping among %d mappings", len(vmas))
	}
	if vmas, err := ReadMapsNaming(os.Getpid(), "/no/such/mapping"); err != nil || vmas != nil {
		t.Errorf("ReadMapsNaming(no such path) = %d mappings, %v; want none", len(vmas), err)
	}
}
