package files

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	ghostfile "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	timeimg "github.com/checkpoint-restore/go-criu/v8/crit/images/time"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
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
	s, prog := runWorld(t, l, w)
	// What the plan makes and removes again, for amber to remove should
	// the restore fail in between.
	if want := []string{"/data/log.amber.1.ghost", "/data/tmp.amber.2.ghost"}; !slices.Equal(prog.Temporaries, want) {
		t.Errorf("temporaries %q, want %q", prog.Temporaries, want)
	}
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
	l.withModes(map[string]fs.FileMode{"/": fs.ModeDir, "/gone": 0})
	if _, err := planFds(l); err == nil || !strings.Contains(err.Error(), "/gone/f") || !strings.Contains(err.Error(), "/gone is no longer a directory") {
		t.Errorf("directory now a file: %v", err)
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
		var x Extra
		if err := readGhosts(img, &x); err != nil {
			t.Fatal(err)
		}
		ghosts := x.Ghosts
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

// kindGhost is a ghost of another kind than a regular file.
func kindGhost(id uint32, mode uint32, set func(e *ghostfile.GhostFileEntry)) *Ghost {
	g := testGhost(id, 0)
	g.Entry.Mode = proto.Uint32(mode)
	if set != nil {
		set(g.Entry)
	}
	return g
}

// TestPlanGhostKinds plans a removed directory whose parent is gone too,
// an unlinked symbolic link, character device and FIFO (two open files
// of it): each is made again (its missing parent first), opened, and
// removed with what was made for it.
func TestPlanGhostKinds(t *testing.T) {
	l := newLayout()
	dir := l.reg("/w/top/sub", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	link := l.reg("/w/ln", unix.O_PATH|unix.O_NOFOLLOW, 0)
	dev := l.reg("/w/null", unix.O_RDWR, 0)
	ffR := l.fifoFile("/w/ff", 77, unix.O_RDONLY|unix.O_NONBLOCK)
	ffW := l.fifoFile("/w/ff", 77, unix.O_WRONLY)
	l.ghost(dir, kindGhost(1, unix.S_IFDIR|0o751, nil))
	l.ghost(link, kindGhost(2, unix.S_IFLNK|0o777, func(e *ghostfile.GhostFileEntry) { e.SymlnkTarget = proto.String("../to") }))
	l.ghost(dev, kindGhost(3, unix.S_IFCHR|0o620, func(e *ghostfile.GhostFileEntry) { e.Rdev = proto.Uint32(0x103) }))
	fifo := kindGhost(4, unix.S_IFIFO|0o640, nil)
	l.ghost(l.in.Files[ffR].GetFifo().GetRegfId(), fifo)
	l.ghost(l.in.Files[ffW].GetFifo().GetRegfId(), fifo)
	l.fd(3, dir, false).fd(4, link, false).fd(5, dev, false).fd(6, ffR, false).fd(7, ffW, false)
	l.withModes(map[string]fs.FileMode{"/w": fs.ModeDir})
	p, err := planFds(l)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range p.prog.Calls[:p.fdsEnd] {
		name := plan.SyscallName(c.Nr)
		switch c.Nr {
		case unix.SYS_MKDIRAT, unix.SYS_MKNODAT, unix.SYS_UNLINKAT, unix.SYS_FCHMODAT:
			got = append(got, fmt.Sprintf("%s %s %#o", name, cString(t, p.prog, c.Args[1]), c.Args[2]))
		case unix.SYS_OPENAT:
			got = append(got, fmt.Sprintf("%s %s %#o", name, cString(t, p.prog, c.Args[1]), c.Args[2]))
		case unix.SYS_SYMLINKAT:
			got = append(got, fmt.Sprintf("symlinkat %s %s", cString(t, p.prog, c.Args[0]), cString(t, p.prog, c.Args[2])))
		}
	}
	want := []string{
		"mkdirat /w/top 0700", "mkdirat /w/top/sub 0751", "fchmodat /w/top/sub 0751",
		fmt.Sprintf("openat /w/top/sub %#o", unix.O_RDONLY|unix.O_DIRECTORY),
		"unlinkat /w/top/sub 01000", "unlinkat /w/top 01000",
		"symlinkat ../to /w/ln.amber.2.ghost",
		fmt.Sprintf("openat /w/ln.amber.2.ghost %#o", unix.O_PATH|unix.O_NOFOLLOW),
		"unlinkat /w/ln.amber.2.ghost 0",
		fmt.Sprintf("mknodat /w/null.amber.3.ghost %#o", unix.S_IFCHR|0o620), "fchmodat /w/null.amber.3.ghost 0620",
		fmt.Sprintf("openat /w/null.amber.3.ghost %#o", unix.O_RDWR), "unlinkat /w/null.amber.3.ghost 0",
		fmt.Sprintf("mknodat /w/ff.amber.4.ghost %#o", unix.S_IFIFO|0o640), "fchmodat /w/ff.amber.4.ghost 0640",
		fmt.Sprintf("openat /w/ff.amber.4.ghost %#o", unix.O_RDWR|unix.O_NONBLOCK),
		fmt.Sprintf("openat /w/ff.amber.4.ghost %#o", unix.O_RDONLY|unix.O_NONBLOCK),
		fmt.Sprintf("openat /w/ff.amber.4.ghost %#o", unix.O_WRONLY),
		"unlinkat /w/ff.amber.4.ghost 0",
	}
	if !slices.Equal(got, want) {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestPlanFSGhostCwd plans a removed working directory: entered through
// the task's descriptor of it when it holds one, else made again, entered
// and removed.
func TestPlanFSGhostCwd(t *testing.T) {
	l := newLayout()
	root := l.reg("/", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	cwd := l.reg("/w/gone", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	open := l.reg("/w/gone", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	g := kindGhost(1, unix.S_IFDIR|0o700, nil)
	l.ghost(cwd, g)
	l.ghost(open, g)
	l.withModes(map[string]fs.FileMode{"/w": fs.ModeDir})
	in := FSInput{Entry: fsEntry(cwd, root, nil), Files: l.in.Files, Extra: l.in.Extra, Stat: l.in.Stat}
	for _, c := range []struct {
		held map[uint32]int
		want []string
	}{
		{map[uint32]int{open: 7}, []string{"fchdir 7"}},
		{nil, []string{"mkdirat /w/gone", "fchownat /w/gone", "fchmodat /w/gone", "chdir /w/gone", "utimensat /w/gone", "unlinkat /w/gone"}},
	} {
		in.Held = c.held
		b := plan.NewBuilder(testBase, 0)
		if err := PlanFS(b, in); err != nil {
			t.Fatal(err)
		}
		p := b.Finish()
		var got []string
		for _, call := range p.Calls {
			switch call.Nr {
			case unix.SYS_FCHDIR:
				got = append(got, fmt.Sprintf("fchdir %d", call.Args[0]))
			case unix.SYS_CHDIR:
				got = append(got, "chdir "+cString(t, p, call.Args[0]))
			default:
				got = append(got, plan.SyscallName(call.Nr)+" "+cString(t, p, call.Args[1]))
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("held %v: calls %q, want %q", c.held, got, c.want)
		}
	}
}
