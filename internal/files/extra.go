package files

import (
	"time"

	"amber/internal/image"
	"amber/internal/sockets"
)

// Extra is what the images besides files.img, fdinfo and pipes-data say
// about open files: the bytes in FIFOs (fifo-data.img), the messages
// queued on sockets (sk-queues.img), unlinked files (remap-fpath.img and
// ghost-file-ID.img) and the modification times of regular files
// (amber-mtimes.txt). Each is optional: a dump writes only those it
// needs.
type Extra struct {
	Fifos    map[uint32]FifoData // FIFO data by pipe id
	SkQueues map[uint32][][]byte // queued messages by socket file id
	// SkScm are the file ids of the descriptors queued messages carry,
	// by socket file id, one slice per message of SkQueues (nil: none).
	SkScm  map[uint32][][]uint32
	Ghosts map[uint32]*Ghost // unlinked files by regular-file id
	// Links are the linked-back files (linkremap.go): the file id of
	// the link the dump made, by the id of the file's own entry.
	Links  map[uint32]uint32
	Mtimes map[uint32]time.Time // modification times by regular-file id
	// TCPStreams are the TCP connections (tcp-stream-INO.img), by
	// socket inode.
	TCPStreams map[uint32]*sockets.TCPStream
	// Ttys are the terminals (tty-info.img, tty-data.img; nil: none).
	Ttys *TtyImages
	// deadPids are the PIDs of processes gone at the dump whose /proc
	// files the tree holds (deadproc.go).
	deadPids map[int]bool
}

// ReadExtra reads the images of Extra that dir has, for the files of idx.
func ReadExtra(dir image.Dir, idx Index) (*Extra, error) {
	x := &Extra{}
	var err error
	if x.Fifos, err = readFifoData(dir); err != nil {
		return nil, err
	}
	if x.SkQueues, x.SkScm, err = sockets.ReadSkQueues(dir); err != nil {
		return nil, err
	}
	if err = readGhosts(dir, x); err != nil {
		return nil, err
	}
	if x.Mtimes, err = readMtimes(dir); err != nil {
		return nil, err
	}
	if x.TCPStreams, err = sockets.ReadTCPStreams(dir, idx); err != nil {
		return nil, err
	}
	if x.Ttys, err = readTtyImages(dir); err != nil {
		return nil, err
	}
	return x, nil
}

// extra is in.Extra, or nothing for a caller that gave none.
func (in *RestoreInput) extra() *Extra {
	if in.Extra == nil {
		return &Extra{}
	}
	return in.Extra
}

// Finish is called once every process is dumped: it checks what needs
// all their files (every socket's peer was dumped too) and writes the
// images the files of all processes share besides files.img and
// pipes-data.img: sk-queues, fifo-data, remap-fpath and the ghost files,
// and amber-mtimes.txt.
func (d *Dumper) Finish(dir image.Dir) error {
	if err := d.sockets.Finish(dir); err != nil {
		return err
	}
	if err := writeFifoData(dir, d.fifos); err != nil {
		return err
	}
	if err := d.checkGhostWatches(); err != nil {
		return err
	}
	if err := d.ghosts.write(dir); err != nil {
		return err
	}
	if err := d.checkCttyUsers(); err != nil {
		return err
	}
	if err := d.ttys.finish(dir, d.opts, d.pidOf); err != nil {
		return err
	}
	if err := d.locks.write(dir, d.pidOf); err != nil {
		return err
	}
	return writeMtimes(dir, d.Table, d.ghosts)
}
