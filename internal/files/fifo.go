package files

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fifo"
	pipedata "github.com/checkpoint-restore/go-criu/v8/crit/images/pipe-data"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/plan"
	"amber/internal/proc"
)

// FIFOs (named pipes), as CRIU's fifo.c has them. A FIFO open file is a
// files.img entry of type FIFO whose regf_id names a regular-file entry
// with the path and open flags (CRIU's trick: the path is dumped as a
// regular file's); pipe_id is the FIFO's inode, shared by every open file
// of it. The bytes in flight go to fifo-data.img, in pipes-data's format.
//
// Restore opens the path O_RDWR first: an open for reading only or
// writing only would wait for the other side, and the O_RDWR file is
// both. Then it opens the path with the dumped flags, refills the FIFO
// through the O_RDWR file and closes that.

// fifoDataName is the image of the bytes in flight in FIFOs.
const fifoDataName = "fifo-data.img"

// FifoData is what a FIFO holds: the bytes in flight and its capacity.
type FifoData struct {
	PipeID uint32
	Data   []byte
	Size   uint32 // F_GETPIPE_SZ; 0 if unknown
}

// addFifo records the FIFO behind pid's fd at path link, and its data
// the first time the FIFO is met. An unlinked FIFO's regular-file entry
// is a ghost, as CRIU has it.
func (d *Dumper) addFifo(pid, fd int, link string, info proc.FdInfo, st os.FileInfo, flags uint32) (uint32, error) {
	regID := uint32(0)
	if strings.HasSuffix(link, " (deleted)") {
		var err error
		if regID, err = d.addGhost(pid, fd, link, proc.FdInfo{}, st, flags); err != nil {
			return 0, err
		}
	} else {
		regID = d.Table.addReg(link, flags, 0, st)
	}
	id := d.Table.nextID()
	ino := inode(st)
	d.Table.entries = append(d.Table.entries, &fdinfo.FileEntry{
		Type: fdinfo.FdTypes_FIFO.Enum(),
		Id:   proto.Uint32(id),
		Fifo: &fifo.FifoEntry{Id: proto.Uint32(id), PipeId: proto.Uint32(uint32(ino)), RegfId: proto.Uint32(regID)},
	})
	if d.fifoSeen == nil {
		d.fifoSeen = map[uint64]bool{}
	}
	if d.fifoSeen[ino] {
		return id, nil
	}
	d.fifoSeen[ino] = true
	pd, err := readPipeData(pid, fd, ino)
	if err != nil {
		return 0, fmt.Errorf("FIFO %s: %w", link, err)
	}
	d.fifos = append(d.fifos, FifoData{PipeID: pd.PipeID, Data: pd.Data, Size: pd.Size})
	return id, nil
}

// writeFifoData writes fifo-data.img, an entry per FIFO as with criu.
func writeFifoData(dir image.Dir, fifos []FifoData) error {
	if len(fifos) == 0 {
		return nil
	}
	w, err := image.Create(dir.File(fifoDataName), image.FifoData)
	if err != nil {
		return err
	}
	for _, p := range fifos {
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

// readFifoData reads fifo-data.img, if there is one: each FIFO by pipe
// id.
func readFifoData(dir image.Dir) (map[uint32]FifoData, error) {
	out := map[uint32]FifoData{}
	err := image.EachEntry(dir.File(fifoDataName), image.FifoData, func(r *image.Reader) error {
		var e pipedata.PipeDataEntry
		data, err := r.NextWithPayload(&e, func() int { return int(e.GetBytes()) })
		if err == nil {
			f := out[e.GetPipeId()]
			f.PipeID, f.Data, f.Size = e.GetPipeId(), append(f.Data, data...), max(f.Size, e.GetSize())
			out[e.GetPipeId()] = f
		}
		return err
	})
	return out, err
}

// makeFifo opens the FIFO of file e by its path and, if e is the FIFO's
// first file in the images, refills it.
func (p *fdPlanner) makeFifo(e *fdinfo.FileEntry) (int, error) {
	fe := e.GetFifo()
	re := p.in.Files[fe.GetRegfId()]
	if re.GetReg() == nil {
		return 0, fmt.Errorf("FIFO file id %d: regf_id %d is no regular-file entry", e.GetId(), fe.GetRegfId())
	}
	reg := re.GetReg()
	name := reg.GetName()
	if g := p.in.extra().ghostOf(fe.GetRegfId()); g != nil {
		return p.makeGhostFifo(e, g)
	}
	st, err := p.in.Stat(name)
	if err != nil {
		return 0, fmt.Errorf("FIFO %s (file id %d) is gone since the dump: %w", name, e.GetId(), err)
	}
	if st.Mode()&os.ModeNamedPipe == 0 {
		return 0, fmt.Errorf("FIFO %s (file id %d) is no FIFO now (mode %v)", name, e.GetId(), st.Mode())
	}
	b := p.b
	what := fmt.Sprintf("FIFO file id %d", e.GetId())
	both := b.Open(what+", read-write so that no open waits", name, unix.O_RDWR|unix.O_NONBLOCK, 0)
	fd := b.Open(what, name, int(reg.GetFlags()&reopenFlags), 0)
	if p.fifoRefiller(e) {
		refillFifo(b, both, name, p.in.extra().Fifos[fe.GetPipeId()])
	}
	b.Close(both)
	return fd, nil
}

// refillFifo plans giving the FIFO open at fd its capacity (at least
// enough for its data: a write into a full FIFO would wait) and data.
func refillFifo(b *plan.Builder, fd int, name string, f FifoData) {
	planPipeSize(b, fd, "FIFO "+name, f.Size, len(f.Data))
	if len(f.Data) > 0 {
		b.Call(fmt.Sprintf("refill FIFO %s with %d bytes", name, len(f.Data)), unix.SYS_WRITE, uint64(fd), b.Bytes(f.Data), uint64(len(f.Data)))
	}
}

// fifoRefiller reports whether e is the first file of its FIFO in the
// images: whichever task opens it refills the FIFO, once.
func (p *fdPlanner) fifoRefiller(e *fdinfo.FileEntry) bool {
	if p.fifoFirst == nil {
		p.fifoFirst = map[uint32]uint32{}
		for id, o := range p.in.Files {
			pipe := o.GetFifo().GetPipeId()
			if first, ok := p.fifoFirst[pipe]; o.GetType() == fdinfo.FdTypes_FIFO && (!ok || id < first) {
				p.fifoFirst[pipe] = id
			}
		}
	}
	return p.fifoFirst[e.GetFifo().GetPipeId()] == e.GetId()
}

// makeGhostFifo makes the unlinked FIFO of file e, ghost g, again, opens
// every FIFO file of the images that is it (parking the others: they
// must share the one FIFO), refills it, removes it and returns e's
// descriptor.
func (p *fdPlanner) makeGhostFifo(e *fdinfo.FileEntry, g *Ghost) (int, error) {
	orig := p.in.Files[e.GetFifo().GetRegfId()].GetReg().GetName()
	b := p.b
	at, made, err := planGhostNode(b, p.in.Stat, orig, g)
	if err != nil {
		return 0, fmt.Errorf("unlinked FIFO %s (file id %d): %w", orig, e.GetId(), err)
	}
	both := b.Open(fmt.Sprintf("unlinked FIFO file id %d, read-write so that no open waits", e.GetId()), at, unix.O_RDWR|unix.O_NONBLOCK, 0)
	mine := -1
	for _, id := range slices.Sorted(maps.Keys(p.in.Files)) {
		o := p.in.Files[id]
		if o.GetType() != fdinfo.FdTypes_FIFO || p.in.extra().ghostOf(o.GetFifo().GetRegfId()) != g {
			continue
		}
		reg := p.in.Files[o.GetFifo().GetRegfId()].GetReg()
		fd := b.Open(fmt.Sprintf("unlinked FIFO file id %d", id), at, openFlags(reg), 0)
		if id == e.GetId() {
			mine = fd
			continue
		}
		p.park(id, b.MoveAbove(fd, p.safe))
	}
	refillFifo(b, both, orig, p.in.extra().Fifos[e.GetFifo().GetPipeId()])
	b.Close(both)
	planRemoveGhost(b, at, g, made)
	return mine, nil
}
