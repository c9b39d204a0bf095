package files

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pipe"
	pipedata "github.com/checkpoint-restore/go-criu/v8/crit/images/pipe-data"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
)

// PipeData is the bytes in flight in one pipe.
type PipeData struct {
	PipeID uint32
	Data   []byte
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
	if size, err := unix.FcntlInt(src.Fd(), unix.F_GETPIPE_SZ, 0); err == nil {
		unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, size)
	}
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

// WritePipesData writes pipes-data.img.
func WritePipesData(dir image.Dir, pipes []PipeData) error {
	w, err := image.Create(dir.Path("pipes-data.img"), image.PipesData)
	if err != nil {
		return err
	}
	for _, p := range pipes {
		e := &pipedata.PipeDataEntry{PipeId: proto.Uint32(p.PipeID), Bytes: proto.Uint32(uint32(len(p.Data)))}
		if err := w.WriteWithPayload(e, p.Data); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

// ReadPipesData reads pipes-data.img, which exists only if some pipe held
// data.
func ReadPipesData(dir image.Dir) (map[uint32][]byte, error) {
	path := dir.Path("pipes-data.img")
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := image.NewReader(f, path, image.PipesData)
	if err != nil {
		return nil, err
	}
	out := map[uint32][]byte{}
	for {
		var e pipedata.PipeDataEntry
		data, err := r.NextWithPayload(&e, func() int { return int(e.GetBytes()) })
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out[e.GetPipeId()] = data
	}
}
