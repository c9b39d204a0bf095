package files

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pipe"
	pipedata "github.com/checkpoint-restore/go-criu/v8/crit/images/pipe-data"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/plan"
)

// PipeData is the bytes in flight in one pipe and its capacity.
type PipeData struct {
	PipeID uint32
	Data   []byte
	Size   uint32 // F_GETPIPE_SZ
}

func (t *Table) addPipe(st os.FileInfo, flags uint32) (uint32, error) {
	id := t.nextID()
	t.entries = append(t.entries, &fdinfo.FileEntry{
		Type: fdinfo.FdTypes_PIPE.Enum(),
		Id:   proto.Uint32(id),
		Pipe: &pipe.PipeEntry{
			Id:     proto.Uint32(id),
			PipeId: proto.Uint32(uint32(inode(st))),
			Flags:  proto.Uint32(flags),
			Fown:   newFown(),
		},
	})
	return id, nil
}

// readPipeData copies what is buffered in the pipe behind pid's fd without
// consuming it: amber opens the pipe through /proc and tee()s it into a
// pipe of its own.
func readPipeData(pid, fd int, ino uint64) (PipeData, error) {
	pd := PipeData{PipeID: uint32(ino)}
	src, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/%d", pid, fd), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return pd, fmt.Errorf("open pipe to read its data: %w", err)
	}
	defer src.Close()
	size, err := unix.FcntlInt(src.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		return pd, fmt.Errorf("F_GETPIPE_SZ: %w", err)
	}
	pd.Size = uint32(size)
	// TIOCINQ is FIONREAD: bytes waiting in the pipe.
	n, err := unix.IoctlGetInt(int(src.Fd()), unix.TIOCINQ)
	if err != nil || n == 0 {
		return pd, err
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return pd, err
	}
	r, w := os.NewFile(uintptr(p[0]), "pipe"), os.NewFile(uintptr(p[1]), "pipe")
	defer r.Close()
	defer w.Close()
	unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, size)
	copied, err := unix.Tee(int(src.Fd()), int(w.Fd()), n, unix.SPLICE_F_NONBLOCK)
	if err != nil {
		return pd, fmt.Errorf("tee pipe data: %w", err)
	}
	pd.Data = make([]byte, copied)
	if _, err := io.ReadFull(r, pd.Data); err != nil {
		return pd, fmt.Errorf("read pipe data: %w", err)
	}
	return pd, nil
}

// WritePipesData writes pipes-data.img: an entry for each pipe that
// holds data or has other than the default capacity.
func WritePipesData(dir image.Dir, pipes []PipeData) error {
	w, err := image.Create(dir.File("pipes-data.img"), image.PipesData)
	if err != nil {
		return err
	}
	for _, p := range pipes {
		e := &pipedata.PipeDataEntry{PipeId: proto.Uint32(p.PipeID), Bytes: proto.Uint32(uint32(len(p.Data)))}
		if p.Size != 0 {
			e.Size = proto.Uint32(p.Size)
		}
		if err := w.WriteWithPayload(e, p.Data); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

// ReadPipesData reads pipes-data.img, which exists only if some pipe held
// data or had another capacity than the default: the data and the
// capacity of each pipe (0: not recorded) by pipe id.
func ReadPipesData(dir image.Dir) (map[uint32][]byte, map[uint32]uint32, error) {
	out, sizes := map[uint32][]byte{}, map[uint32]uint32{}
	err := image.EachEntry(dir.File("pipes-data.img"), image.PipesData, func(r *image.Reader) error {
		var e pipedata.PipeDataEntry
		data, err := r.NextWithPayload(&e, func() int { return int(e.GetBytes()) })
		if err == nil {
			out[e.GetPipeId()], sizes[e.GetPipeId()] = data, e.GetSize()
		}
		return err
	})
	if err != nil || len(out) == 0 {
		return nil, nil, err
	}
	return out, sizes, nil
}

// makePipe creates the pipe that file e is an end of, refills it, and
// returns e's descriptor. Every other file of the pipe is parked above
// every target number for whichever task (this one included) needs it.
//
// The first read-only and the first write-only file of the pipe are the
// two ends pipe2 makes. Any other file of the pipe is another open file
// description of an end (the task opened /proc/PID/fd/N, or opened an
// end read-write): it is opened again the same way, through
// /proc/self/fd of the end just made, with its own flags.
func (p *fdPlanner) makePipe(e *fdinfo.FileEntry) (int, error) {
	pipeID := e.GetPipe().GetPipeId()
	ends := p.createPipe(pipeID)
	files := p.pipeEnds(pipeID)
	direct := directEnds(files)
	mine := -1
	for _, f := range files {
		fd := p.pipeFile(f, ends, direct)
		if f.GetId() == e.GetId() {
			mine = fd
			continue
		}
		p.park(f.GetId(), fd)
	}
	if mine < 0 {
		return 0, fmt.Errorf("pipe %d: file id %d not found in files.img", pipeID, e.GetId())
	}
	for k, end := range ends {
		if direct[k] == 0 {
			p.b.Close(end) // an end no file of the dump is
		}
	}
	return mine, nil
}

// createPipe plans pipe2 and the refill of pipe pipeID, and returns its
// read and write ends, above every target number.
func (p *fdPlanner) createPipe(pipeID uint32) [2]int {
	r := p.b.Next()
	p.b.Call(fmt.Sprintf("create pipe %d", pipeID), unix.SYS_PIPE2, p.b.Bytes(make([]byte, 8)), 0)
	p.b.Take()
	w := p.b.Take()
	ends := [2]int{p.b.MoveAbove(r, p.safe), p.b.MoveAbove(w, p.safe)}
	data := p.in.Pipes[pipeID]
	planPipeSize(p.b, ends[1], fmt.Sprintf("pipe %d", pipeID), p.in.PipeSizes[pipeID], len(data))
	if len(data) > 0 {
		p.b.Call(fmt.Sprintf("refill pipe %d with %d bytes", pipeID, len(data)), unix.SYS_WRITE, uint64(ends[1]), p.b.Bytes(data), uint64(len(data)))
	}
	return ends
}

// pipeFile returns a descriptor of file f of a pipe whose ends are made:
// an end itself if f is one of the direct ones, else a new open file of
// the end through /proc/self/fd.
func (p *fdPlanner) pipeFile(f *fdinfo.FileEntry, ends [2]int, direct [2]uint32) int {
	pipeID, flags := f.GetPipe().GetPipeId(), f.GetPipe().GetFlags()
	if k, ok := directEnd(f); ok && direct[k] == f.GetId() {
		p.setNonblock(ends[k], flags, fmt.Sprintf("pipe %d", pipeID))
		return ends[k]
	}
	from := ends[pipeEnd(f)]
	what := fmt.Sprintf("pipe %d: file id %d, another open file of its end", pipeID, f.GetId())
	fd := p.b.Open(what, fmt.Sprintf("/proc/self/fd/%d", from), int(flags&pipeReopenFlags), 0)
	return p.b.MoveAbove(fd, p.safe)
}

// pipeReopenFlags are the flags of a pipe's file that opening it again
// through /proc/self/fd keeps: access mode, non-blocking and packet mode.
const pipeReopenFlags = unix.O_ACCMODE | unix.O_NONBLOCK | unix.O_DIRECT

// defaultPipeSize is the capacity of a new pipe.
const defaultPipeSize = 64 << 10

// planPipeSize plans giving the pipe or FIFO open at fd its dumped
// capacity (0: not recorded), and at least room for its n bytes of
// data: a write into a full pipe would block the task.
func planPipeSize(b *plan.Builder, fd int, what string, dumped uint32, n int) {
	size := max(int(dumped), n)
	if size > defaultPipeSize || (dumped != 0 && size != defaultPipeSize) {
		b.Call(fmt.Sprintf("size %s to %d bytes", what, size), unix.SYS_FCNTL, uint64(fd), unix.F_SETPIPE_SZ, uint64(size))
	}
}

// directEnds are the ids of the files that are the ends pipe2 makes: the
// first read-only file and the first write-only one (0: none).
func directEnds(files []*fdinfo.FileEntry) [2]uint32 {
	var ids [2]uint32
	for _, f := range files {
		if k, ok := directEnd(f); ok && ids[k] == 0 {
			ids[k] = f.GetId()
		}
	}
	return ids
}

// directEnd tells which end pipe2 makes as file f would be: 0 if f is
// read-only, 1 if write-only; a read-write file is neither.
func directEnd(f *fdinfo.FileEntry) (int, bool) {
	switch f.GetPipe().GetFlags() & unix.O_ACCMODE {
	case unix.O_RDONLY:
		return 0, true
	case unix.O_WRONLY:
		return 1, true
	}
	return 0, false
}

// pipeEnd is 0 for a read end, 1 for a write end.
func pipeEnd(e *fdinfo.FileEntry) int {
	if e.GetPipe().GetFlags()&unix.O_ACCMODE == unix.O_WRONLY {
		return 1
	}
	return 0
}

// pipeEnds lists the files of the dump that are ends of pipe pipeID, in
// id order. The index is grouped by pipe on the first call: a process
// may hold thousands of pipes.
func (p *fdPlanner) pipeEnds(pipeID uint32) []*fdinfo.FileEntry {
	if p.pipes == nil {
		p.pipes = map[uint32][]*fdinfo.FileEntry{}
		for _, id := range slices.Sorted(maps.Keys(p.in.Files)) {
			if e := p.in.Files[id]; e.GetType() == fdinfo.FdTypes_PIPE {
				p.pipes[e.GetPipe().GetPipeId()] = append(p.pipes[e.GetPipe().GetPipeId()], e)
			}
		}
	}
	return p.pipes[pipeID]
}
