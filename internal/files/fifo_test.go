package files

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fifo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/regfile"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/proc"
)

// fifoFile adds an open file of the FIFO at path (pipe id pipeID): a
// regular-file entry with the path and flags, and the FIFO entry.
func (l *layout) fifoFile(path string, pipeID uint32, flags uint32) uint32 {
	reg := l.entry(fdinfo.FdTypes_REG, func(e *fdinfo.FileEntry, id uint32) {
		e.Reg = &regfile.RegFileEntry{Id: proto.Uint32(id), Flags: proto.Uint32(flags), Pos: proto.Uint64(0),
			Fown: newFown(), Name: proto.String(path)}
	})
	return l.entry(fdinfo.FdTypes_FIFO, func(e *fdinfo.FileEntry, id uint32) {
		e.Fifo = &fifo.FifoEntry{Id: proto.Uint32(id), PipeId: proto.Uint32(pipeID), RegfId: proto.Uint32(reg)}
	})
}

// fifoWorld is a world with a FIFO at path, and l's stat agreeing.
func fifoWorld(l *layout, path string) (*simWorld, *simPipe) {
	w := newWorld()
	p := &simPipe{n: 1}
	w.nodes[path] = &simNode{kind: "fifo", pipe: p, linked: true}
	l.withModes(map[string]fs.FileMode{path: fs.ModeNamedPipe})
	return w, p
}

func TestPlanFifo(t *testing.T) {
	l := newLayout()
	r := l.fifoFile("/run/f", 9, unix.O_RDONLY|unix.O_NONBLOCK)
	wr := l.fifoFile("/run/f", 9, unix.O_WRONLY)
	l.in.Extra = &Extra{Fifos: map[uint32]FifoData{9: {PipeID: 9, Data: bytes.Repeat([]byte("x"), 100000), Size: 256 << 10}}}
	l.fd(3, r, false).fd(5, wr, true)
	w, pipe := fifoWorld(l, "/run/f")
	s, p := runWorld(t, l, w)
	for fd, mode := range map[int]uint64{3: unix.O_RDONLY | unix.O_NONBLOCK, 5: unix.O_WRONLY} {
		d := s.fds[fd]
		if d.f.kind != "fifo" || d.f.pipe != pipe || d.f.flags&(unix.O_ACCMODE|unix.O_NONBLOCK) != mode {
			t.Errorf("fd %d: %v flags %#x, want the FIFO with flags %#x", fd, d.f, d.f.flags, mode)
		}
	}
	if !bytes.Equal(pipe.data, l.in.Extra.Fifos[9].Data) {
		t.Errorf("the FIFO holds %d bytes, want %d", len(pipe.data), len(l.in.Extra.Fifos[9].Data))
	}
	if len(s.fds) != 2 {
		t.Errorf("a descriptor leaked:\n%s", s.dump())
	}
	if !strings.Contains(p.String(), "size FIFO /run/f to 262144 bytes") {
		t.Errorf("the FIFO does not get its capacity before its data:\n%s", p)
	}
}

// TestPlanFifoRefilledOnce: the FIFO's first file refills it; a task
// opening another of its files does not.
func TestPlanFifoRefilledOnce(t *testing.T) {
	l := newLayout()
	first := l.fifoFile("/run/f", 9, unix.O_RDONLY)
	second := l.fifoFile("/run/f", 9, unix.O_WRONLY)
	l.in.Extra = &Extra{Fifos: map[uint32]FifoData{9: {PipeID: 9, Data: []byte("data")}}}
	l.fd(4, second, false)
	w, pipe := fifoWorld(l, "/run/f")
	runWorld(t, l, w)
	if len(pipe.data) != 0 {
		t.Errorf("the second file refilled the FIFO with %q", pipe.data)
	}
	l.in.Fds = nil
	l.fd(4, first, false)
	runWorld(t, l, w)
	if string(pipe.data) != "data" {
		t.Errorf("the first file refilled the FIFO with %q, want \"data\"", pipe.data)
	}
}

func TestPlanFifoErrors(t *testing.T) {
	l := newLayout()
	l.fd(3, l.fifoFile("/run/gone", 9, unix.O_RDONLY), false)
	if _, err := planFds(l); err == nil || !strings.Contains(err.Error(), "/run/gone") || !strings.Contains(err.Error(), "gone") {
		t.Errorf("a missing FIFO: %v", err)
	}
	l.withModes(map[string]fs.FileMode{"/run/gone": 0})
	if _, err := planFds(l); err == nil || !strings.Contains(err.Error(), "no FIFO") {
		t.Errorf("a regular file where the FIFO was: %v", err)
	}
}

// TestFifoDump dumps a FIFO of this process: its path, the FIFO entry
// and the data in it, which stays.
func TestFifoDump(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write([]byte("in flight")); err != nil {
		t.Fatal(err)
	}
	d := NewDumper(NewTable(), DumpOptions{})
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*os.File{r, w} {
		if _, err := d.addFifo(os.Getpid(), int(f.Fd()), path, proc.FdInfo{}, st, unix.O_RDONLY); err != nil {
			t.Fatal(err)
		}
	}
	if len(d.fifos) != 1 || string(d.fifos[0].Data) != "in flight" || d.fifos[0].PipeID != uint32(st.Sys().(*syscall.Stat_t).Ino) || d.fifos[0].Size != 64<<10 {
		t.Errorf("FIFO data %+v, want \"in flight\" once", d.fifos)
	}
	buf := make([]byte, 20)
	if n, _ := r.Read(buf); string(buf[:n]) != "in flight" {
		t.Errorf("the FIFO lost its data: %q", buf[:n])
	}
	var fifos int
	for _, e := range d.Table.Entries() {
		if fe := e.GetFifo(); fe != nil {
			fifos++
			if reg := d.Table.Entries()[fe.GetRegfId()-1].GetReg(); reg.GetName() != path {
				t.Errorf("FIFO id %d: regf_id %d names %q", fe.GetId(), fe.GetRegfId(), reg.GetName())
			}
		}
	}
	if fifos != 2 {
		t.Errorf("%d FIFO entries, want 2", fifos)
	}
	img := tempImages(t)
	if err := writeFifoData(img, d.fifos); err != nil {
		t.Fatal(err)
	}
	got, err := readFifoData(img)
	if err != nil || string(got[d.fifos[0].PipeID].Data) != "in flight" || got[d.fifos[0].PipeID].Size != 64<<10 {
		t.Errorf("fifo-data.img read back %v, %v", got, err)
	}
}
