package files

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/regfile"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/proc"
)

// TestPlanHostGhostFds: descriptors of a ghost amber made (a mapped one)
// only open it where it is, at their positions; the task neither makes
// nor removes it. A ghost held only open is still made in the task.
func TestPlanHostGhostFds(t *testing.T) {
	l := newLayout()
	a := l.reg("/dev/shm/sem.x", unix.O_RDWR, 0)
	b := l.reg("/dev/shm/sem.x", unix.O_RDONLY, 10)
	other := l.reg("/data/tmp", unix.O_WRONLY, 0)
	l.ghost(a, testGhost(1, 32, GhostChunk{0, []byte("sem")}))
	l.ghost(b, l.in.Extra.Ghosts[a])
	l.ghost(other, testGhost(2, 3, GhostChunk{0, []byte("abc")}))
	l.fd(3, a, false).fd(4, b, false).fd(9, other, true)
	l.withModes(map[string]fs.FileMode{"/data": fs.ModeDir})
	at := "/dev/shm/sem.x.amber.1.ghost"
	l.in.HostGhosts = map[uint32]string{1: at}
	w := newWorld()
	made := &simNode{kind: "file", data: []byte("sem"), mode: 0o600, linked: true}
	w.nodes[at] = made
	s, prog := runWorld(t, l, w)
	if s.fds[3].f.node != made || s.fds[4].f.node != made {
		t.Fatalf("fds 3 and 4 must be the ghost amber made:\n%s", s.dump())
	}
	if s.fds[3].f.flags&unix.O_ACCMODE != unix.O_RDWR || s.fds[4].f.pos != 10 {
		t.Errorf("fd 3 %v, fd 4 %v: want O_RDWR, and position 10", s.fds[3].f, s.fds[4].f)
	}
	if !made.linked || w.nodes[at] != made || s.opened[at] != 2 {
		t.Errorf("the task unlinked amber's ghost or opened it %d times, not 2", s.opened[at])
	}
	if strings.Contains(prog.String(), "unlink "+at) || strings.Contains(prog.String(), "size "+at) {
		t.Errorf("the task makes or removes amber's ghost:\n%s", prog)
	}
	if n := s.fds[9].f.node; n == nil || n == made || n.linked || string(n.data) != "abc" {
		t.Errorf("fd 9: the ghost held only open is not made and removed in the task: %v", s.fds[9].f)
	}
}

// hostIndex is an index of regular files by id.
func hostIndex(names map[uint32]string) Index {
	idx := Index{}
	for id, name := range names {
		idx[id] = &fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(id),
			Reg: &regfile.RegFileEntry{Id: proto.Uint32(id), Name: proto.String(name)}}
	}
	return idx
}

func TestPlanHostGhosts(t *testing.T) {
	idx := hostIndex(map[uint32]string{1: "/a/x", 2: "/a/x", 3: "/a/sem.TMP", 4: "/a/sem.name", 5: "/a/fdonly", 6: "/a/plain"})
	g1, g2, g3 := testGhost(1, 4), testGhost(2, 4), testGhost(3, 4)
	x := &Extra{Ghosts: map[uint32]*Ghost{1: g1, 2: g1, 3: g2, 4: g2, 5: g3}}
	dirs := map[string]fs.FileMode{"/a": fs.ModeDir}
	stat := func(p string) (os.FileInfo, error) {
		if m, ok := dirs[p]; ok {
			return fakeInfo{name: p, mode: m}, nil
		}
		return nil, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
	}
	gs, err := PlanHostGhosts(idx, x, []uint32{6, 4, 2, 1, 4, 3, 2}, stat)
	if err != nil {
		t.Fatal(err)
	}
	want := []HostGhost{{"/a/x.amber.1.ghost", g1}, {"/a/sem.TMP.amber.2.ghost", g2}}
	if len(gs) != len(want) || gs[0] != want[0] || gs[1] != want[1] {
		t.Fatalf("host ghosts %v, want %v (one per ghost, at the name of its lowest file id; not the fd-only one)", gs, want)
	}
	if p := HostPaths(gs); len(p) != 2 || p[1] != want[0].Path || p[2] != want[1].Path {
		t.Errorf("paths %v", p)
	}
	dirs["/a/x.amber.1.ghost"] = 0
	if _, err := PlanHostGhosts(idx, x, []uint32{1}, stat); err == nil || !strings.Contains(err.Error(), "/a/x.amber.1.ghost exists") {
		t.Errorf("path taken: %v", err)
	}
	delete(dirs, "/a")
	if _, err := PlanHostGhosts(idx, x, []uint32{3}, stat); err == nil || !strings.Contains(err.Error(), "/a is gone") {
		t.Errorf("directory gone: %v", err)
	}
	x.Ghosts[6] = kindGhost(4, unix.S_IFIFO|0o600, nil)
	if _, err := PlanHostGhosts(idx, x, []uint32{6}, stat); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a mapped FIFO: %v", err)
	}
}

func TestMappedPath(t *testing.T) {
	idx := hostIndex(map[uint32]string{1: "/a/x", 2: "/a/y", 3: "/a/z"})
	idx[2].GetReg().Size = proto.Uint64(1000)
	x := &Extra{Ghosts: map[uint32]*Ghost{1: testGhost(7, 4), 3: testGhost(8, 4)}}
	check := FileCheck{Stat: func(p string) (os.FileInfo, error) {
		if p == "/a/y" {
			return fakeInfo{name: p, size: 1000}, nil
		}
		return nil, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
	}}
	path := idx.MappedPath(check, x, map[uint32]string{7: "/a/x.amber.7.ghost"})
	if p, err := path(1); err != nil || p != "/a/x.amber.7.ghost" {
		t.Errorf("ghost: %q, %v", p, err)
	}
	if p, err := path(2); err != nil || p != "/a/y" {
		t.Errorf("plain file: %q, %v", p, err)
	}
	if _, err := path(3); err == nil || !strings.Contains(err.Error(), "file id 3") {
		t.Errorf("a ghost amber did not make: %v", err)
	}
}

// TestMakeHostGhosts makes ghosts in a temporary directory: contents
// (holes left), mode, owner and times; an error removes those made, and
// Remove unlinks them, twice without error.
func TestMakeHostGhosts(t *testing.T) {
	dir := t.TempDir()
	g := testGhost(1, 10000, GhostChunk{0, []byte("head")}, GhostChunk{9000, []byte("tail")})
	g.Entry.Uid, g.Entry.Gid = proto.Uint32(uint32(os.Getuid())), proto.Uint32(uint32(os.Getgid()))
	first := filepath.Join(dir, "a.amber.1.ghost")
	h, err := MakeHostGhosts(nil, []HostGhost{{first, g}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode().Perm() != 0o640 || !st.ModTime().Equal(time.Unix(200, 9000)) || time.Unix(sys.Atim.Unix()) != time.Unix(100, 7000) {
		t.Errorf("mode %v mtime %v atime %v", st.Mode(), st.ModTime(), time.Unix(sys.Atim.Unix()))
	}
	data, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 10000)
	copy(want, "head")
	copy(want[9000:], "tail")
	if !bytes.Equal(data, want) {
		t.Errorf("contents differ: %d bytes", len(data))
	}
	if err := h.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := h.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if _, err := os.Stat(first); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still there: %v", first, err)
	}
	taken := filepath.Join(dir, "b.amber.2.ghost")
	if err := os.WriteFile(taken, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := MakeHostGhosts(nil, []HostGhost{{first, g}, {taken, testGhost(2, 0)}}, nil); err == nil || !strings.Contains(err.Error(), taken) {
		t.Errorf("a path taken: %v", err)
	}
	if _, err := os.Stat(first); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed MakeHostGhosts left %s: %v", first, err)
	}
	if _, err := os.Stat(taken); err != nil {
		t.Errorf("MakeHostGhosts removed a file it did not make: %v", err)
	}
}

// TestGhostMapping dumps mappings of a deleted file of this process:
// mappings with the same flags are one file entry, others another, and
// both and a descriptor of the file share one ghost, whose contents are
// read through map_files.
func TestGhostMapping(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteAt([]byte("mapped"), 0)
	f.Truncate(8192)
	m1, err1 := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ, unix.MAP_SHARED)
	m2, err2 := unix.Mmap(int(f.Fd()), 4096, 4096, unix.PROT_READ, unix.MAP_SHARED)
	m3, err3 := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ, unix.MAP_PRIVATE)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m1)
	defer unix.Munmap(m2)
	defer unix.Munmap(m3)
	os.Remove(p)
	d := NewDumper(NewTable(), DumpOptions{GhostLimit: DefaultGhostLimit})
	vma := func(m []byte) proc.VMA {
		start := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(m))))
		return proc.VMA{Start: start, End: start + 4096, Path: p, Deleted: true}
	}
	id1, err1 := d.GhostMapping(os.Getpid(), vma(m1), unix.O_RDWR)
	id2, err2 := d.GhostMapping(os.Getpid(), vma(m2), unix.O_RDWR)
	id3, err3 := d.GhostMapping(os.Getpid(), vma(m3), unix.O_RDONLY)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	idFd, err := d.addGhost(os.Getpid(), int(f.Fd()), p+" (deleted)", proc.FdInfo{}, st, unix.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	if id1 != id2 || id1 == id3 || idFd == id1 || idFd == id3 {
		t.Errorf("file ids %d %d %d, fd %d: want the first two equal, the others apart", id1, id2, id3, idFd)
	}
	img := tempImages(t)
	if err := d.ghosts.write(img); err != nil {
		t.Fatal(err)
	}
	var x Extra
	if err := readGhosts(img, &x); err != nil {
		t.Fatal(err)
	}
	ghosts := x.Ghosts
	g := ghosts[id1]
	if g == nil || ghosts[id3] != g || ghosts[idFd] != g || len(d.ghosts.srcs) != 1 {
		t.Fatalf("want one ghost for every mapping and the fd: %v", ghosts)
	}
	if g.Size != 8192 || len(g.Chunks) == 0 || string(g.Chunks[0].Data[:6]) != "mapped" {
		t.Errorf("ghost of %d bytes, chunks %d", g.Size, len(g.Chunks))
	}
	if reg := d.Table.Entries()[id3-1].GetReg(); reg.GetName() != p || reg.GetFlags() != unix.O_RDONLY {
		t.Errorf("entry %v", reg)
	}
	f.WriteAt(make([]byte, 8192), 0)
	f.Sync()
	small := NewDumper(NewTable(), DumpOptions{GhostLimit: 4096})
	if _, err := small.GhostMapping(os.Getpid(), vma(m1), unix.O_RDWR); err == nil || !strings.Contains(err.Error(), "--ghost-limit") {
		t.Errorf("a mapped ghost above the limit: %v", err)
	}
}
