package proc

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// smapsSample is captured from Linux 6.18 (x86_64), most blocks cut to the
// keys that matter. Anonymous headers end in a space, as the kernel prints
// them.
const smapsSample = `55747534f000-5574754de000 rw-p 00000000 00:00 0                          [heap]
Size:               1596 kB
KernelPageSize:        4 kB
MMUPageSize:           4 kB
Rss:                1544 kB
Pss:                1544 kB
Pss_Dirty:          1544 kB
Shared_Clean:          0 kB
Shared_Dirty:          0 kB
Private_Clean:         0 kB
Private_Dirty:      1544 kB
Referenced:         1544 kB
Anonymous:          1544 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
THPeligible:           0
VmFlags: rd wr mr mw me ac 
7fd0b5200000-7fd0b5600000 rw-s 00000000 00:11 447422                     /anon_hugepage (deleted)
Size:               4096 kB
KernelPageSize:     2048 kB
MMUPageSize:        2048 kB
Rss:                   0 kB
Shared_Hugetlb:     2048 kB
VmFlags: rd wr sh mr mw me ms de ht 
7fd0b57bd000-7fd0b57bf000 rw-s 00000000 00:01 1025                       /dev/zero (deleted)
Size:                  8 kB
Rss:                   4 kB
Anonymous:             0 kB
VmFlags: rd wr sh mr mw me ms 
7fd0b640e000-7fd0b640f000 r--p 00000000 fe:00 9978209                    /tmp/gone.bin (deleted)
Rss:                   0 kB
Anonymous:             0 kB
VmFlags: rd mr mw me 
7fd0b640f000-7fd0b6410000 rw-s 00000000 fe:00 9978193                    /tmp/my file (x).bin
Rss:                   4 kB
VmFlags: rd wr sh mr mw me ms 
7fd0b6417000-7fd0b6419000 rw-p 00000000 00:00 0 
Size:                  8 kB
Rss:                   8 kB
Shared_Clean:          4 kB
Shared_Dirty:          4 kB
Anonymous:             8 kB
VmFlags: rd wr mr mw me ac 
7fd0b6419000-7fd0b641d000 r--p 00000000 00:00 0                          [vvar]
VmFlags: rd mr pf io de dd 
7fd0b641f000-7fd0b6421000 r-xp 00000000 00:00 0                          [vdso]
VmFlags: rd ex mr mw me de 
7ffd0aa7c000-7ffd0aa9d000 rw-p 00000000 00:00 0                          [stack]
Rss:                 132 kB
Anonymous:           132 kB
Swap:                 12 kB
VmFlags: rd wr mr mw me gd ac 
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
VmFlags: ex 
`

const (
	rw  = unix.PROT_READ | unix.PROT_WRITE
	r   = unix.PROT_READ
	rx  = unix.PROT_READ | unix.PROT_EXEC
	kiB = 1024
)

func TestParseSmapsSample(t *testing.T) {
	vmas, err := ParseSmaps(strings.NewReader(smapsSample))
	if err != nil {
		t.Fatal(err)
	}
	want := []VMA{
		{Start: 0x55747534f000, End: 0x5574754de000, Prot: rw, Path: "[heap]",
			VmFlags: []string{"rd", "wr", "mr", "mw", "me", "ac"}, Rss: 1544 * kiB, Anonymous: 1544 * kiB, KernelPageSize: 4 * kiB},
		{Start: 0x7fd0b5200000, End: 0x7fd0b5600000, Prot: rw, Shared: true, Minor: 0x11, Inode: 447422,
			Path: "/anon_hugepage", Deleted: true, VmFlags: []string{"rd", "wr", "sh", "mr", "mw", "me", "ms", "de", "ht"},
			KernelPageSize: 2048 * kiB},
		{Start: 0x7fd0b57bd000, End: 0x7fd0b57bf000, Prot: rw, Shared: true, Minor: 1, Inode: 1025,
			Path: "/dev/zero", Deleted: true, VmFlags: []string{"rd", "wr", "sh", "mr", "mw", "me", "ms"}, Rss: 4 * kiB},
		{Start: 0x7fd0b640e000, End: 0x7fd0b640f000, Prot: r, Major: 0xfe, Inode: 9978209,
			Path: "/tmp/gone.bin", Deleted: true, VmFlags: []string{"rd", "mr", "mw", "me"}},
		{Start: 0x7fd0b640f000, End: 0x7fd0b6410000, Prot: rw, Shared: true, Major: 0xfe, Inode: 9978193,
			Path: "/tmp/my file (x).bin", VmFlags: []string{"rd", "wr", "sh", "mr", "mw", "me", "ms"}, Rss: 4 * kiB},
		{Start: 0x7fd0b6417000, End: 0x7fd0b6419000, Prot: rw,
			VmFlags: []string{"rd", "wr", "mr", "mw", "me", "ac"}, Rss: 8 * kiB, Anonymous: 8 * kiB, SharedRss: 8 * kiB},
		{Start: 0x7fd0b6419000, End: 0x7fd0b641d000, Prot: r, Path: "[vvar]",
			VmFlags: []string{"rd", "mr", "pf", "io", "de", "dd"}},
		{Start: 0x7fd0b641f000, End: 0x7fd0b6421000, Prot: rx, Path: "[vdso]",
			VmFlags: []string{"rd", "ex", "mr", "mw", "me", "de"}},
		{Start: 0x7ffd0aa7c000, End: 0x7ffd0aa9d000, Prot: rw, Path: "[stack]",
			VmFlags: []string{"rd", "wr", "mr", "mw", "me", "gd", "ac"}, Rss: 132 * kiB, Anonymous: 132 * kiB, Swap: 12 * kiB},
		{Start: 0xffffffffff600000, End: 0xffffffffff601000, Prot: unix.PROT_EXEC, Path: "[vsyscall]",
			VmFlags: []string{"ex"}},
	}
	if !reflect.DeepEqual(vmas, want) {
		t.Errorf("got\n%+v\nwant\n%+v", vmas, want)
	}
	if !vmas[8].HasFlag("gd") || vmas[0].HasFlag("gd") {
		t.Error("HasFlag(gd): want only [stack]")
	}
	if got := vmas[0].Size(); got != 1596*kiB {
		t.Errorf("heap Size = %d, want %d", got, 1596*kiB)
	}
}

func TestParseMaps(t *testing.T) {
	const maps = "557458662000-557458663000 r--p 00000000 fe:00 18500                      /root/bin/python3.11\n" +
		"7fd0b55c9000-7fd0b56fc000 rw-p 00000000 00:00 0 \n" +
		"7fd0b641f000-7fd0b6421000 r-xp 00000000 00:00 0                          [vdso]\n" +
		"7fd0b6422000-7fd0b6448000 r-xp 00001000 103:0a 325835                    /lib/ld.so\n"
	vmas, err := ParseSmaps(strings.NewReader(maps))
	if err != nil {
		t.Fatal(err)
	}
	want := []VMA{
		{Start: 0x557458662000, End: 0x557458663000, Prot: r, Major: 0xfe, Inode: 18500, Path: "/root/bin/python3.11"},
		{Start: 0x7fd0b55c9000, End: 0x7fd0b56fc000, Prot: rw},
		{Start: 0x7fd0b641f000, End: 0x7fd0b6421000, Prot: rx, Path: "[vdso]"},
		{Start: 0x7fd0b6422000, End: 0x7fd0b6448000, Prot: rx, Offset: 0x1000, Major: 0x103, Minor: 0xa, Inode: 325835, Path: "/lib/ld.so"},
	}
	if !reflect.DeepEqual(vmas, want) {
		t.Errorf("got\n%+v\nwant\n%+v", vmas, want)
	}
}

func TestParseSmapsErrors(t *testing.T) {
	const hdr = "7fd0b6417000-7fd0b6419000 rw-p 00000000 00:00 0 \n"
	for _, tc := range []struct{ text, want string }{
		{"Rss: 4 kB\n", `line 1: "Rss" before the first mapping header`},
		{hdr + "\n", "line 2: "},
		{hdr + "garbage\n", "line 2: "},
		{hdr + "Rss: 4 MB\n", "line 2: Rss: "},
		{hdr + "Anonymous: 18014398509481984 kB\n", "line 2: Anonymous: "},
		{"7fd0b6419000-7fd0b6417000 rw-p 00000000 00:00 0 \n", "end before start"},
		{"7fd0b6417000-7fd0b6419000 rwxq 00000000 00:00 0 \n", "perms"},
		{"7fd0b6417000-7fd0b6419000 rw-p 00000000 0000 0 \n", "device"},
		{"7fd0b6417000-7fd0b6419000 rw-p 0000000g 00:00 0 \n", "offset"},
		{"7fd0b6417000-7fd0b6419000 rw-p 00000000 00:00 x \n", "inode"},
		{"7fd0b6417000 rw-p 00000000 00:00 0 \n", "address"},
	} {
		_, err := ParseSmaps(strings.NewReader(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSmaps(%q) = %v, want error containing %q", tc.text, err, tc.want)
		}
	}
}

// TestReadSmapsSelf maps regions of known shape into the test process and
// finds them in its own smaps.
func TestReadSmapsSelf(t *testing.T) {
	page := os.Getpagesize()
	anon := mmapT(t, -1, 3*page, rw, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	anon[0] = 1 // fault in one page, then make the VMA unlike Go's own rw-p heap
	if err := unix.Mprotect(anon, unix.PROT_READ); err != nil {
		t.Fatal(err)
	}
	shm := mmapT(t, -1, page, rw, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	file, fileIno := mappedDeletedFile(t, page)

	vmas, err := ReadSmaps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if v := findVMA(t, vmas, anon); v.Prot != r || v.Shared || v.Path != "" ||
		v.Size() != uint64(3*page) || v.Rss != uint64(page) || v.Anonymous != uint64(page) {
		t.Errorf("private anonymous mapping: %+v", v)
	}
	if v := findVMA(t, vmas, shm); !v.Shared || v.Path != "/dev/zero" || !v.Deleted || !v.HasFlag("sh") {
		t.Errorf("shared anonymous mapping: %+v", v)
	}
	if v := findVMA(t, vmas, file); !v.Shared || !v.Deleted || v.Inode != fileIno ||
		!strings.HasSuffix(v.Path, "/with space (1)") {
		t.Errorf("deleted file mapping: %+v", v)
	}
	if !hasStack(vmas) {
		t.Error("no [stack] mapping with the gd flag")
	}
}

// ReadMaps finds the same mappings as ReadSmaps, with their addresses,
// protections and paths, but none of the smaps fields.
func TestReadMapsSelf(t *testing.T) {
	page := os.Getpagesize()
	anon := mmapT(t, -1, 2*page, rw, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err := unix.Mprotect(anon, unix.PROT_READ); err != nil {
		t.Fatal(err)
	}
	file, _ := mappedDeletedFile(t, page)
	vmas, err := ReadMaps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if v := findVMA(t, vmas, anon); v.Prot != r || v.Size() != uint64(2*page) || v.VmFlags != nil {
		t.Errorf("private anonymous mapping: %+v", v)
	}
	if v := findVMA(t, vmas, file); !v.Deleted || !strings.HasSuffix(v.Path, "/with space (1)") {
		t.Errorf("deleted file mapping: %+v", v)
	}
	vdso := false
	for _, v := range vmas {
		vdso = vdso || v.Path == "[vdso]"
	}
	if !vdso {
		t.Error("no [vdso] mapping")
	}
}

func mmapT(t *testing.T, fd, size, prot, flags int) []byte {
	t.Helper()
	b, err := unix.Mmap(fd, 0, size, prot, flags)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

// mappedDeletedFile maps a file whose name has spaces and parentheses,
// then unlinks it, and returns the mapping and the file's inode.
func mappedDeletedFile(t *testing.T, size int) ([]byte, uint64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "with space (1)")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(size)); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	b := mmapT(t, int(f.Fd()), size, rw, unix.MAP_SHARED)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	return b, st.Ino
}

func findVMA(t *testing.T, vmas []VMA, b []byte) VMA {
	t.Helper()
	addr := uint64(uintptr(unsafe.Pointer(&b[0])))
	for _, v := range vmas {
		if v.Start <= addr && addr < v.End {
			return v
		}
	}
	t.Fatalf("no VMA holds %#x", addr)
	return VMA{}
}

func hasStack(vmas []VMA) bool {
	for _, v := range vmas {
		if v.Path == "[stack]" && v.HasFlag("gd") {
			return true
		}
	}
	return false
}

func TestReadSmapsNoProcess(t *testing.T) {
	_, err := ReadSmaps(noSuchPid)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadSmaps(no such pid) = %v, want fs.ErrNotExist", err)
	}
}

func FuzzParseSmaps(f *testing.F) {
	f.Add(smapsSample)
	f.Add("0-1000 rw-p 0 00:00 0 \nVmFlags: \n")
	f.Fuzz(func(t *testing.T, text string) {
		vmas, err := ParseSmaps(strings.NewReader(text))
		if err != nil {
			return
		}
		for _, v := range vmas {
			if v.End < v.Start || strings.HasSuffix(v.Path, " (deleted)") && !v.Deleted {
				t.Fatalf("inconsistent VMA %+v", v)
			}
		}
	})
}
