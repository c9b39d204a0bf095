package files

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	ghostfile "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	timeimg "github.com/checkpoint-restore/go-criu/v8/crit/images/time"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/proc"
)

// ghost makes regular file id of l the unlinked file g.
func (l *layout) ghost(id uint32, g *Ghost) {
	if l.in.Extra == nil {
		l.in.Extra = &Extra{}
	}
	if l.in.Extra.Ghosts == nil {
		l.in.Extra.Ghosts = map[uint32]*Ghost{}
	}
	l.in.Extra.Ghosts[id] = g
	delete(l.sizes, l.in.Files[id].GetReg().GetName()) // it is gone
}

func testGhost(id uint32, size uint64, chunks ...GhostChunk) *Ghost {
	return &Ghost{ID: id, Size: size, Chunks: chunks, Entry: &ghostfile.GhostFileEntry{
		Uid: proto.Uint32(5), Gid: proto.Uint32(6), Mode: proto.Uint32(unix.S_IFREG | 0o640),
		Atim: &timeimg.Timeval{TvSec: proto.Uint64(100), TvUsec: proto.Uint64(7)},
		Mtim: &timeimg.Timeval{TvSec: proto.Uint64(200), TvUsec: proto.Uint64(9)},
	}}
}

func TestPlanGhost(t *testing.T) {
	l := newLayout()
	a := l.reg("/data/log", unix.O_RDWR, 50)
	b := l.reg("/data/log", unix.O_RDONLY, 10)
	other := l.reg("/data/tmp", unix.O_WRONLY|unix.O_APPEND, 0)
	g := testGhost(1, 200000, GhostChunk{0, []byte("head")}, GhostChunk{150000, []byte("tail")})
	l.ghost(a, g)
	l.ghost(b, g)
	l.ghost(other, testGhost(2, 3, GhostChunk{0, []byte("abc")}))
	l.fd(3, a, false).fd(4, b, false).fd(9, other, true)
	l.withModes(map[string]fs.FileMode{"/data": fs.ModeDir})
	w := newWorld()
	s, _ := runWorld(t, l, w)
	fa, fb, fo := s.fds[3].f, s.fds[4].f, s.fds[9].f
	if fa.node == nil || fa.node != fb.node || fo.node == nil || fo.node == fa.node {
		t.Fatalf("fds 3 and 4 must share one made inode, fd 9 another:\n%s", s.dump())
	}
	n := fa.node
	want := make([]byte, 200000)
	copy(want, "head")
	copy(want[150000:], "tail")
	if !bytes.Equal(n.data, want) {
		t.Errorf("the ghost holds %d bytes, not its chunks at their offsets", len(n.data))
	}
	if n.linked || len(w.nodes) != 0 {
		t.Errorf("a ghost still has a name: %v", w.nodes)
	}
	if n.mode != 0o640 || n.uid != 5 || n.gid != 6 || n.times != [4]uint64{100, 7000, 200, 9000} {
		t.Errorf("ghost mode %#o owner %d:%d times %v", n.mode, n.uid, n.gid, n.times)
	}
	if fa.pos != 50 || fb.pos != 10 || fa.flags&unix.O_ACCMODE != unix.O_RDWR || fb.flags&unix.O_ACCMODE != unix.O_RDONLY {
		t.Errorf("fd 3 %v, fd 4 %v: want O_RDWR at 50 and O_RDONLY at 10", fa, fb)
	}
	if fo.flags&(unix.O_ACCMODE|unix.O_APPEND) != unix.O_WRONLY|unix.O_APPEND || string(fo.node.data) != "abc" {
		t.Errorf("fd 9 %v holding %q", fo, fo.node.data)
	}
	for p := range s.opened {
		if !strings.HasPrefix(p, "/data/log.amber.1.ghost") && !strings.HasPrefix(p, "/data/tmp.amber.2.ghost") {
			t.Errorf("opened %s, not a ghost's temporary path", p)
		}
	}
}

func TestPlanGhostErrors(t *testing.T) {
	l := newLayout()
	id := l.reg("/gone/f", unix.O_RDONLY, 0)
	l.ghost(id, testGhost(1, 0))
	l.fd(3, id, false)
	if _, err := planFds(l); err == nil || !strings.Contains(err.Error(), "/gone/f") || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory gone: %v", err)
	}
	l.withModes(map[string]fs.FileMode{"/gone": fs.ModeDir, "/gone/f.amber.1.ghost": 0})
	if _, err := planFds(l); err == nil || !strings.Contains(err.Error(), "/gone/f.amber.1.ghost exists") {
		t.Errorf("temporary path taken: %v", err)
	}
}

// TestGhostImages dumps an unlinked file of this process, small and
// large (chunks, with a hole), and reads the ghost images back.
func TestGhostImages(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int64{100, 200000} {
		p := filepath.Join(dir, "g")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		f.WriteAt([]byte("start"), 0)
		f.WriteAt([]byte("end"), size-3)
		os.Remove(p)
		st, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		d := NewDumper(NewTable(), DumpOptions{GhostLimit: DefaultGhostLimit})
		id, err := d.addGhost(os.Getpid(), int(f.Fd()), p+" (deleted)", proc.FdInfo{Pos: 3}, st, unix.O_RDWR)
		if err != nil {
			t.Fatal(err)
		}
		if reg := d.Table.Entries()[id-1].GetReg(); reg.GetName() != p || reg.GetPos() != 3 {
			t.Errorf("entry %v, want %s at 3", reg, p)
		}
		img := tempImages(t)
		if err := d.ghosts.write(img); err != nil {
			t.Fatal(err)
		}
		ghosts, err := readGhosts(img)
		if err != nil {
			t.Fatal(err)
		}
		g := ghosts[id]
		if g == nil || g.Size != uint64(size) || g.Entry.GetMode() != uint32(st.Sys().(*syscall.Stat_t).Mode) {
			t.Fatalf("size %d: ghost %+v", size, g)
		}
		data := make([]byte, g.Size)
		for _, c := range g.Chunks {
			copy(data[c.Off:], c.Data)
		}
		if string(data[:5]) != "start" || string(data[size-3:]) != "end" || strings.Trim(string(data[5:size-3]), "\x00") != "" {
			t.Errorf("size %d: contents read back differ", size)
		}
		if chunked := g.Entry.GetChunks(); chunked != (size >= ghostChunksFrom) {
			t.Errorf("size %d: chunks %v", size, chunked)
		}
	}
}

func TestGhostLimit(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write(make([]byte, 64<<10))
	f.Sync()
	os.Remove(f.Name())
	st, _ := f.Stat()
	d := NewDumper(NewTable(), DumpOptions{GhostLimit: 4096})
	_, err = d.addGhost(os.Getpid(), int(f.Fd()), f.Name()+" (deleted)", proc.FdInfo{}, st, unix.O_RDWR)
	if err == nil || !strings.Contains(err.Error(), "--ghost-limit") || !strings.Contains(err.Error(), f.Name()) {
		t.Errorf("a ghost above the limit: %v", err)
	}
}

// TestGhostStillLinked: a link ending in " (deleted)" is no ghost when
// the file is still linked: under that very name (kept as a regular
// file), or under another one (refused).
func TestGhostStillLinked(t *testing.T) {
	dir := t.TempDir()
	odd := filepath.Join(dir, "name (deleted)")
	f, err := os.Create(odd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	d := NewDumper(NewTable(), DumpOptions{GhostLimit: DefaultGhostLimit})
	id, err := d.addGhost(os.Getpid(), int(f.Fd()), odd, proc.FdInfo{}, st, unix.O_RDONLY)
	if err != nil || d.ghosts.isGhost(id) || d.Table.Entries()[id-1].GetReg().GetName() != odd {
		t.Errorf("a file named like a deleted one: id %d, %v", id, err)
	}
	other := filepath.Join(dir, "other")
	if err := os.Link(odd, other); err != nil {
		t.Fatal(err)
	}
	os.Remove(odd)
	st, _ = f.Stat()
	if _, err := d.addGhost(os.Getpid(), int(f.Fd()), odd+" (deleted)", proc.FdInfo{}, st, unix.O_RDONLY); err == nil ||
		!strings.Contains(err.Error(), "linked elsewhere") {
		t.Errorf("a file linked under another name: %v", err)
	}
}
