package uffd

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioc is the kernel's _IOC(dir, typ, nr, size) on x86-64.
func ioc(dir uint64, typ, nr byte, size uintptr) uintptr {
	return uintptr(dir<<30 | uint64(size)<<16 | uint64(typ)<<8 | uint64(nr))
}

func TestIoctlNumbers(t *testing.T) {
	const rw, r = 3, 2
	for _, c := range []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"UFFDIO_API", ioctlAPI, ioc(rw, 0xaa, 0x3f, unsafe.Sizeof(APIArg{}))},
		{"UFFDIO_REGISTER", ioctlReg, ioc(rw, 0xaa, 0x00, 32)},
		{"UFFDIO_WAKE", ioctlWake, ioc(r, 0xaa, 0x02, 16)},
		{"UFFDIO_COPY", ioctlCopy, ioc(rw, 0xaa, 0x03, 40)},
		{"UFFDIO_ZEROPAGE", ioctlZero, ioc(rw, 0xaa, 0x04, 32)},
		{"UFFDIO_POISON", ioctlPoison, ioc(rw, 0xaa, 0x08, 32)},
		{"USERFAULTFD_IOC_NEW", ioctlDevNew, ioc(0, 0xaa, 0x00, 0)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, computed %#x", c.name, c.got, c.want)
		}
	}
}

// open makes a userfaultfd with features, or skips where the kernel has
// none of it.
func open(t *testing.T, features uint64) int {
	fd, err := Open(unix.O_CLOEXEC | unix.O_NONBLOCK)
	if err != nil {
		t.Skipf("no userfaultfd here: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	offered, err := API(fd, features)
	if err != nil {
		t.Skipf("features %#x not offered: %v", features, err)
	}
	if offered&features != features {
		t.Fatalf("the handshake enabled %#x, asked %#x", offered, features)
	}
	return fd
}

func anon(t *testing.T, pages int) ([]byte, uint64) {
	m, err := unix.Mmap(-1, 0, pages*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m) })
	return m, uint64(uintptr(unsafe.Pointer(&m[0])))
}

// TestFill registers missing pages and fills them: a copy, the zero
// page, a copy refused where a page is, and a poisoned page that reads
// fail on once the userfaultfd is closed.
func TestFill(t *testing.T) {
	fd := open(t, FeaturePoison)
	m, base := anon(t, 4)
	if err := Register(fd, base, base+4*4096, ModeMissing); err != nil {
		t.Fatal(err)
	}
	src := bytes.Repeat([]byte{0x5a}, 4096)
	if n, err := Copy(fd, base, unsafe.Pointer(&src[0]), 4096); err != nil || n != 4096 {
		t.Fatalf("Copy = %d, %v", n, err)
	}
	if n, err := Copy(fd, base, unsafe.Pointer(&src[0]), 4096); !errors.Is(err, unix.EEXIST) || n != 0 {
		t.Errorf("Copy over a present page = %d, %v, want EEXIST", n, err)
	}
	if n, err := ZeroPage(fd, base+4096, 4096); err != nil || n != 4096 {
		t.Fatalf("ZeroPage = %d, %v", n, err)
	}
	if err := Wake(fd, base, 4096); err != nil {
		t.Errorf("Wake: %v", err)
	}
	if m[0] != 0x5a || m[4095] != 0x5a || m[4096] != 0 {
		t.Errorf("filled pages read %#x %#x %#x", m[0], m[4095], m[4096])
	}
	if n, err := Poison(fd, base+2*4096, 4096); err != nil || n != 4096 {
		t.Fatalf("Poison = %d, %v", n, err)
	}
	unix.Close(fd)
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	b := make([]byte, 8)
	if _, err := mem.ReadAt(b, int64(base+2*4096)); err == nil {
		t.Errorf("a poisoned page read %x after the userfaultfd closed", b)
	}
	if _, err := mem.ReadAt(b, int64(base+3*4096)); err != nil {
		t.Errorf("a page never filled, after the userfaultfd closed: %v", err)
	}
}

// TestWriteProtect: asynchronous write protection registers.
func TestWriteProtect(t *testing.T) {
	fd := open(t, FeatureWPAsync|FeatureWPUnpopulated)
	_, base := anon(t, 2)
	if err := Register(fd, base, base+2*4096, ModeWP); err != nil {
		t.Fatal(err)
	}
	if err := Register(fd, base, base+4096, 1<<7); !errors.Is(err, unix.EINVAL) {
		t.Errorf("an unknown mode registered: %v", err)
	}
}
