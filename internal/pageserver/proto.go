package pageserver

import (
	"encoding/binary"
	"fmt"
)

// Command numbers of a request (criu/page-xfer.c).
const (
	CmdAdd    = 1 // pages follow; their entry is present (PE_PRESENT)
	CmdHole   = 2 // no pages; their entry is in the parent (PE_PARENT)
	CmdOpen   = 3 // start a destination, no answer
	CmdOpen2  = 4 // start a destination; answered with one byte: has a parent
	CmdParent = 5 // answered with an int32: has a parent
	CmdAddF   = 6 // an entry with its flags; pages follow if PE_PRESENT
	CmdGet    = 7 // a lazy restore asks for pages
	// CmdClose ends a session; answered with an int32 status once every
	// page is written (CRIU's PS_IOV_CLOSE, once PS_IOV_FLUSH).
	CmdClose = 0x1023
	// CmdForceClose is CmdClose from a dumper that does not close the
	// socket afterwards (PS_IOV_FORCE_CLOSE, once PS_IOV_FLUSH_N_CLOSE).
	CmdForceClose = 0x1024
)

// Pagemap entry flags, carried in the upper bits of an ADD_F command
// (criu/include/pagemap.h).
const (
	FlagParent  = 1 << 0
	FlagLazy    = 1 << 1
	FlagPresent = 1 << 2
)

// RequestSize is the size of a request on the wire: CRIU's struct
// page_server_iov, a u32 command, four bytes of padding, then three u64.
const RequestSize = 32

// PageSize is the size of the pages a request counts.
const PageSize = 4096

// cmdBits is how many low bits of the command word hold the command; the
// flags of ADD_F are above them.
const cmdBits = 16

// Request is one request of the protocol.
type Request struct {
	Cmd     uint32 // one of the Cmd constants
	Flags   uint32 // pagemap entry flags, for CmdAddF
	NrPages uint64
	Vaddr   uint64
	Dest    uint64 // the destination, encoded (Dest.Encode)
}

// Marshal encodes r into b, which holds RequestSize bytes.
func (r Request) Marshal(b []byte) {
	_ = b[RequestSize-1]
	binary.LittleEndian.PutUint32(b[0:], r.Flags<<cmdBits|r.Cmd)
	binary.LittleEndian.PutUint32(b[4:], 0)
	binary.LittleEndian.PutUint64(b[8:], r.NrPages)
	binary.LittleEndian.PutUint64(b[16:], r.Vaddr)
	binary.LittleEndian.PutUint64(b[24:], r.Dest)
}

// ParseRequest decodes a request from b, which holds RequestSize bytes.
// The padding is ignored: CRIU does not clear it.
func ParseRequest(b []byte) Request {
	_ = b[RequestSize-1]
	w := binary.LittleEndian.Uint32(b[0:])
	return Request{
		Cmd:     w & (1<<cmdBits - 1),
		Flags:   w >> cmdBits,
		NrPages: binary.LittleEndian.Uint64(b[8:]),
		Vaddr:   binary.LittleEndian.Uint64(b[16:]),
		Dest:    binary.LittleEndian.Uint64(b[24:]),
	}
}

// PageFlags are the pagemap entry flags a request of an adding command
// (ADD, HOLE, ADD_F) gives its pages.
func (r Request) PageFlags() uint32 {
	switch r.Cmd {
	case CmdAdd:
		return FlagPresent
	case CmdHole:
		return FlagParent
	}
	return r.Flags
}

// Bytes is the size of the pages r counts.
func (r Request) Bytes() uint64 { return r.NrPages * PageSize }

// String names the request for errors and logs.
func (r Request) String() string {
	return fmt.Sprintf("%s %#x+%d pages to %v flags %#x", cmdName(r.Cmd), r.Vaddr, r.NrPages, DecodeDest(r.Dest), r.Flags)
}

func cmdName(cmd uint32) string {
	names := map[uint32]string{CmdAdd: "ADD", CmdHole: "HOLE", CmdOpen: "OPEN", CmdOpen2: "OPEN2",
		CmdParent: "PARENT", CmdAddF: "ADD_F", CmdGet: "GET", CmdClose: "CLOSE", CmdForceClose: "FORCE_CLOSE"}
	if n, ok := names[cmd]; ok {
		return n
	}
	return fmt.Sprintf("command %#x", cmd)
}

// Kind is what a destination's pagemap belongs to.
type Kind int

// The kinds of destination.
const (
	KindUnknown Kind = iota
	KindTask         // pagemap-ID.img: a process's private memory, ID its PID
	KindShmem        // pagemap-shmem-ID.img: a shared memory object
)

// typeBits is how many low bits of an encoded destination hold its kind.
const typeBits = 8

// Wire numbers of the kinds. CRIU before 3.3 sent its changing image
// numbers instead; DecodeDest takes those too.
const (
	wireTask  = 1
	wireShmem = 2
)

// Dest is a destination: the pagemap of a process or shared memory object.
type Dest struct {
	Kind Kind
	ID   uint64
}

// TaskDest is the destination of process pid's pages.
func TaskDest(pid int) Dest { return Dest{KindTask, uint64(pid)} }

// Encode encodes d for the wire.
func (d Dest) Encode() uint64 {
	t := uint64(wireTask)
	if d.Kind == KindShmem {
		t = wireShmem
	}
	return d.ID<<typeBits | t
}

// DecodeDest decodes a destination from the wire; its Kind is
// KindUnknown if the type is none CRIU ever sent.
func DecodeDest(v uint64) Dest {
	d := Dest{ID: v >> typeBits}
	switch v & (1<<typeBits - 1) {
	case wireTask, 10, 11, 16, 17:
		d.Kind = KindTask
	case wireShmem, 27, 28, 29, 32, 33, 34:
		d.Kind = KindShmem
	}
	return d
}

// ImageName is the name of d's pagemap image.
func (d Dest) ImageName() string {
	if d.Kind == KindShmem {
		return fmt.Sprintf("pagemap-shmem-%d.img", d.ID)
	}
	return fmt.Sprintf("pagemap-%d.img", d.ID)
}

// String names d.
func (d Dest) String() string {
	switch d.Kind {
	case KindTask:
		return fmt.Sprintf("pid %d", d.ID)
	case KindShmem:
		return fmt.Sprintf("shmem %#x", d.ID)
	}
	return fmt.Sprintf("unknown destination %#x", d.ID)
}
